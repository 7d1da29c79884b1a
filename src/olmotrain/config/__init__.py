"""What a user writes: the schema (typed dataclasses), composition, and the checks of both."""
