from .cli import main

# vLLM spawns its engine processes, which import this module again: only the parent runs the CLI.
if __name__ == "__main__":
    main()
