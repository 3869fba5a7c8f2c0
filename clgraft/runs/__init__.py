"""Running a stream (a configuration → R, run.json, predictions) and localizing a finished run."""
