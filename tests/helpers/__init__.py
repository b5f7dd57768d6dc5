"""What tests share besides fixtures: tenant folders (:mod:`.tenants`), configuration problems
(:mod:`.problems`), delivered mail (:mod:`.mail`), the workspace harness (:mod:`.workspace`)
and how it runs the CLI (:mod:`.cli` in this process, :mod:`.processes` in real processes), and
a silent UI for the flows (:mod:`.ui`). Servers, ports and state backends are pytest fixtures in
``tests/fixtures/``."""

# benchmarks/graph.py builds its tenants with these, imported from here.
from tests.helpers.tenants import enabled_users, tenant_doc, write_tenant

__all__ = ["enabled_users", "tenant_doc", "write_tenant"]
