pytest_plugins = ["tests.fixtures.smtp"]
