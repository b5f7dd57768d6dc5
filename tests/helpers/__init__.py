"""What tests share besides fixtures: tenant folders (:mod:`.tenants`), configuration problems
(:mod:`.problems`), delivered mail (:mod:`.mail`), the workspace harness (:mod:`.workspace`)
and how it runs the CLI (:mod:`.cli` in this process, :mod:`.processes` in real processes), and
a silent UI for the flows (:mod:`.ui`). Servers, ports and state backends are pytest fixtures in
``tests/fixtures/``."""
