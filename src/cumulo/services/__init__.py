"""Use cases behind the API: validate, write the Spec, wake the right reconciler."""
