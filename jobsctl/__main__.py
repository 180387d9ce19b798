from jobsctl.cli import main

main()
