from flowbot.cli import main

main()
