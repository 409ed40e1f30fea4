from papi_sandbox.cli import main

main()
