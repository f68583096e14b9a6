"""Victim networks, the parasitic CNN and the insertion of parasites into victims."""
