"""One module per `discovery` subcommand; each defines `register(subparsers)`."""
