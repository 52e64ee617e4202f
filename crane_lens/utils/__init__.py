"""Small helpers shared by the pipeline stages and the build scripts."""
