"""Safe outputs: output requests from a workspace's outputs/ folder, automatic disclosure checks, two
independent output checkers, and an atomic, hashed release package."""
