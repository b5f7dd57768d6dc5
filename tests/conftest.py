pytest_plugins = ["tests.fixtures.smtp", "tests.fixtures.state", "tests.fixtures.graph",
                  "tests.fixtures.azure_devops"]
