from agentcost._cli import main

main()
