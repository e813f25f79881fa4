"""The Flow Service + IMS simulator: the same API on loopback, from a scenario.

- `scenario.py`: worlds to serve (`build_scenario`, `demo_scenario`, `flow_id`);
- `payloads.py`: run and flow payload builders;
- `query.py`: the filter and orderby language;
- `world.py`: indexed flows and runs, listing and continuation paging;
- `server.py`: `Simulator`, the HTTP server with IMS, header checks and faults.
"""
