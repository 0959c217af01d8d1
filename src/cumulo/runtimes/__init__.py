"""Where processes run. Runtimes take core specs and return observations; they never touch the store."""
