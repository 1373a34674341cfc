"""Everything that touches Kafka or Redis: producer SDK, worker, store, readers, ops tools."""
