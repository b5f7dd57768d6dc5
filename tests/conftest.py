pytest_plugins = ["tests.fixtures.smtp", "tests.fixtures.state", "tests.fixtures.graph"]
