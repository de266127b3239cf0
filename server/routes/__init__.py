"""HTTP endpoints, thin: parse -> validate -> predict -> encode, each step a named function elsewhere."""
