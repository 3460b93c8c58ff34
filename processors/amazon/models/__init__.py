"""msgspec Structs for the documented response shapes, trimmed to the fields we use."""
