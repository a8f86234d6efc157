"""SQLModel tables of the projection, the engine, and the migrations runner."""
