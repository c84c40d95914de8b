"""SYNTHETIC demo data: the procedurally generated demo corpora and a long recording with known emotion segments."""
