from cumulo.serving.runner import main

main()
