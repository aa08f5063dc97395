"""The command-line layer: argument parsing and `main()`s of every command, clients, the load test, the benchmark,
the demo and the pipeline. It imports the library (`ernie3`); the library never imports it."""
