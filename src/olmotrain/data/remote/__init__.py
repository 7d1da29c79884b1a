"""Remote data: token files in object storage (S3 and S3-compatible stores) or behind HTTP,
checked in bounded time and copied once into a local cache."""
