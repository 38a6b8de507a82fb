"""An embedded lab on loopback: BMCs and services for the demo and tests."""
