"""Write a full-size shop export in the layout of this example, to try `crmscore run` on it.

The eight customers of ``customers.csv`` are enough to see validation at work but far too few to train
(``churn.min_customers`` is 200). This script takes the embedded synthetic data and writes it the way
the example shop exports it: ``customers.csv`` (CustID, Created, Region, Plan) and ``orders.csv``
(OrderNo, CustID, OrderDate, Revenue, Category, Qty), dates as day/month/year.

    python examples/byod/make_shop.py shop/ --customers 2000
    crmscore validate --input shop/ --out out/ --params examples/byod/params.yaml
    crmscore run --input shop/ --params examples/byod/params.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from crmscore.data.simulate import simulate_crm

DATE_FORMAT = "%d/%m/%Y"


def make_shop(out_dir: str | Path, customers: int = 2000, seed: int = 1) -> dict[str, Path]:
    """Write ``customers.csv`` and ``orders.csv`` for ``customers`` simulated customers; return the paths."""
    sim = simulate_crm(customers=customers, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    people = sim.customers
    shop_customers = pd.DataFrame(
        {
            "CustID": people["customer_id"],
            "Created": people["signup_date"].dt.strftime(DATE_FORMAT),
            "Region": people["region"].astype(str),
            "Plan": people["contract"].astype(str),
        }
    )
    sales = sim.transactions
    orders = pd.DataFrame(
        {
            "OrderNo": range(100_001, 100_001 + len(sales)),
            "CustID": sales["customer_id"],
            "OrderDate": sales["date"].dt.strftime(DATE_FORMAT),
            "Revenue": sales["amount"].round(2),
            "Category": sales["product"].astype(str),
            "Qty": sales["quantity"],
        }
    )
    paths = {"customers": out / "customers.csv", "transactions": out / "orders.csv"}
    shop_customers.to_csv(paths["customers"], index=False)
    orders.to_csv(paths["transactions"], index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder for customers.csv and orders.csv")
    parser.add_argument("--customers", type=int, default=2000, help="number of customers (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()
    for table, path in make_shop(args.out_dir, args.customers, args.seed).items():
        print(f"{table:<13} {path}")


if __name__ == "__main__":
    main()
