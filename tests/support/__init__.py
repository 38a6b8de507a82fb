"""Helpers the tests share: peers on loopback, ports, fake clocks."""
