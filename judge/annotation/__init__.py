"""Human labels: reading annotators' columns, adjudication, agreement between people."""
