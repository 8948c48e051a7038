"""The suites `python -m harness run --suite NAME` runs, one file each, registered with `@SUITES.register(name)`
(harness/suite.py). Every module here is imported the first time the registry is read; `common.py` holds what
several of them share."""
