"""One module per pipeline stage, named for what it does; ``resolvers.pipeline`` lists them."""
