from paraeval.cli.main import main

main()
