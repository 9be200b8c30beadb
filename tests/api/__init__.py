"""Tests of the feedback HTTP API (a package: its helpers are imported as ``api.harness``)."""
