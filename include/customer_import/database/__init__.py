"""Everything that talks to PostgreSQL: the connection and schema (`connection`, `db`, `sql/`), the
import runs (`runs`), the staged rows (`staging`), the checks that need the whole file or the stored
customers (`checks`), the MERGE and its history (`merge`, `history`) and rollback (`rollback`). It
may use the contract, the settings and the storage; never the readers, the sources' profiles, the
page or the local commands.
"""
