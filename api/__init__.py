"""The thin HTTP front end: starts, steers and queries enrollment workflows."""
