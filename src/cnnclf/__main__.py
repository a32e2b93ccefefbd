from cnnclf.cli import main

main()
