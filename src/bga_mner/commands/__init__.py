"""One module per `bga-mner` sub-command; each defines ``add_arguments(parser)`` and ``main(args) -> int``."""
