"""The application layer: the k15 CLI, the demo recipe and the long-CoT pipeline that chain train, serve,
evalsuite and ui."""
