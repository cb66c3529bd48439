"""Telling people: mail (see `mail`)."""
