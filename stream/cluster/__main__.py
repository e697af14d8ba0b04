"""`python -m stream.cluster`: the cluster's command line."""

from stream.cluster.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
