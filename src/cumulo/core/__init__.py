"""Domain types shared by every layer: specs, states, views, units, errors. Imports nothing internal."""
