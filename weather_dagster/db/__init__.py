"""The product's own tables (SQLAlchemy Core), engine, migrations, step log and work claims."""
