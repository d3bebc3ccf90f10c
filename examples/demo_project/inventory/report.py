from .store import Store


def summary(store: Store) -> str:
    lines = [f"{item.name}: {item.quantity} x {item.price:.2f}" for item in store.items.values()]
    lines.append(f"total: {store.total_value():.2f}")
    return "\n".join(lines)
