"""Pure decisions: input (with `now` and previous state) in, Decision out. No clock, no I/O."""
