"""Writes the garden centre's source files (deterministic: seed 7). Run from jobs/examples/garden-centre:
python3 tools/make_sources.py. The files are committed; the tests read them, not this script."""
import json, random, datetime as dt, os

random.seed(7)
AS_OF = dt.date(2025, 11, 30)
FIRST = ["Aroha", "Mere", "Tama", "Wiremu", "Sophie", "Olivia", "Liam", "Noah", "Charlotte", "Jack",
         "Isla", "Oliver", "Amelia", "George", "Ruby", "Hemi", "Ngaio", "James", "Grace", "Lucas"]
LAST = ["Ngata", "Smith", "Williams", "Brown", "Wilson", "Taylor", "Jones", "Walker", "Te Huia",
        "Thompson", "Anderson", "Clark", "White", "Harris", "Martin", "Parata", "King", "Robinson"]
STREETS = ["Kowhai Road", "Rimu Street", "Totara Avenue", "Harbour View Terrace", "Pohutukawa Drive",
           "Manuka Lane", "Kauri Crescent", "Matai Place"]
PLACES = [("Ponsonby", "Auckland", "1011"), ("Remuera", "Auckland", "1050"),
          ("Karori", "Wellington", "6012"), ("Riccarton", "Christchurch", "8011"),
          ("Frankton", "Hamilton", "3204")]

def phone_mobile():
    return "02" + str(random.choice([1, 2, 7])) + " " + str(random.randint(100, 999)) + " " + str(random.randint(1000, 9999))

people = []
households = []
for h in range(70):
    suburb, city, postcode = random.choice(PLACES)
    street = f"{random.randint(1, 240)} {random.choice(STREETS)}"
    last = random.choice(LAST)
    landline = f"0{random.choice([3, 4, 7, 9])} {random.randint(300, 999)} {random.randint(1000, 9999)}"
    size = random.choice([1, 1, 1, 2, 2, 3])
    for m in range(size):
        first = random.choice(FIRST)
        birth = dt.date(random.randint(1945, 2002), random.randint(1, 12), random.randint(1, 28))
        email = f"{first.lower()}.{last.lower().replace(' ', '')}{random.randint(1, 99)}@example.co.nz"
        people.append(dict(id=len(people) + 1, first=first, last=last, street=street, suburb=suburb,
                           city=city, postcode=postcode, landline=landline, mobile=phone_mobile(),
                           email=email, birth=birth, household=h + 1,
                           opted_out=random.random() < 0.08))

os.makedirs("sources/pos", exist_ok=True)
os.makedirs("sources/shop", exist_ok=True)
os.makedirs("sources/finance", exist_ok=True)
os.makedirs("sources/newsletter", exist_ok=True)
os.makedirs("truth", exist_ok=True)

truth = [("source", "record_id", "person_id")]
card = 100000
pos_rows = []
shop_rows = []
for p in people:
    p["in_pos"] = random.random() < 0.75
    p["in_shop"] = random.random() < 0.45 or not p["in_pos"]
    if p["in_pos"]:
        card += random.randint(1, 9)
        p["card"] = f"GC{card}"
        title = random.choice(["Mr", "Mrs", "Ms", "Dr", ""])
        phone = p["landline"] if random.random() < 0.5 else p["mobile"]
        joined = AS_OF - dt.timedelta(days=random.randint(60, 1400))
        pos_rows.append([p["card"], title, f"{p['first']} {p['last']}", p["street"], p["suburb"],
                         p["city"], p["postcode"], phone, p["email"] if random.random() < 0.6 else "",
                         p["birth"].strftime("%d/%m/%Y") if random.random() < 0.7 else "",
                         "N" if p["opted_out"] else "Y", joined.isoformat()])
        truth.append(("pos", p["card"], str(p["id"])))
    if p["in_shop"]:
        p["shop_id"] = 5000 + p["id"]
        postcode = int(p["postcode"]) if random.random() < 0.4 else p["postcode"]  # a JSON number now and then
        shop_rows.append({"id": p["shop_id"], "email": p["email"], "first_name": p["first"],
                          "last_name": p["last"],
                          "default_address": {"address1": p["street"], "city": p["city"], "zip": postcode,
                                              "phone": "+64 " + p["mobile"][1:]},
                          "created_at": (dt.datetime(2023, 1, 1) + dt.timedelta(days=random.randint(0, 1000), hours=random.randint(8, 20))).isoformat() + "+13:00",
                          "accepts_marketing": not p["opted_out"] and random.random() < 0.8})
        truth.append(("shop", str(p["shop_id"]), str(p["id"])))

# The POS was migrated once: two cards repeat as corrupted copies, caught by the source's rules.
corrupt = list(pos_rows[3]); corrupt[2] = corrupt[2].replace("a", "\x07", 1)
pos_rows.insert(10, corrupt)
mangled = list(pos_rows[5]); mangled[0] = mangled[0][:3] + "O" + mangled[0][4:]
pos_rows.insert(20, mangled)

import csv
with open("sources/pos/customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["card_no", "title", "full_name", "address_1", "suburb", "city", "postcode", "phone",
                "email", "dob", "marketing", "joined"])
    w.writerows(pos_rows)
with open("sources/shop/accounts.jsonl", "w") as f:
    for r in shop_rows:
        f.write(json.dumps(r) + "\n")

sales = []
orders = []
receipt = 700000
order_no = 1000
for p in people:
    buys = random.choice([0, 1, 1, 2, 3, 4, 6, 9])
    for _ in range(buys):
        day = AS_OF - dt.timedelta(days=random.randint(0, 900))
        amount = round(random.uniform(8, 180), 2)
        if p.get("card") and (not p.get("shop_id") or random.random() < 0.6):
            receipt += random.randint(1, 40)
            sales.append([f"R{receipt}", p["card"], day.strftime("%d/%m/%Y"), f"{amount:.2f}"])
        elif p.get("shop_id"):
            order_no += 1
            currency = random.choices(["NZD", "AUD", "USD"], [0.8, 0.15, 0.05])[0]
            rate = {"NZD": 1.0, "AUD": 1.09, "USD": 1.66}[currency]
            orders.append([f"#{order_no}", p["shop_id"], f"{day.isoformat()}T{random.randint(8, 21):02d}:15:00+13:00",
                           f"{amount / rate:.2f}", currency])
sales.sort(key=lambda r: r[0])
with open("sources/pos/sales.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["receipt", "card_no", "date", "total"])
    w.writerows(sales)
with open("sources/shop/orders.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["order_number", "customer_id", "created_at", "total_price", "currency"])
    w.writerows(orders)
with open("sources/finance/fx.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["currency", "date", "nzd_per_unit"])
    for cur, base in [("AUD", 1.09), ("USD", 1.66)]:
        w.writerow([cur, "", base])
        d = dt.date(2023, 6, 1)
        while d <= AS_OF:
            w.writerow([cur, d.isoformat(), round(base * (1 + 0.03 * ((d.month % 5) - 2) / 2), 4)])
            d = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

# One campaign: the spring newsletter, sent to everyone with an email who did not opt out.
with open("sources/newsletter/sends.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["email", "first_name", "last_name", "postcode", "campaign", "sent_on", "opened", "unsubscribed"])
    for p in people:
        if not p["opted_out"] and random.random() < 0.8:
            w.writerow([p["email"], p["first"], p["last"], p["postcode"], "spring-2025", "2025-09-15",
                        "yes" if random.random() < 0.35 else "no", "yes" if random.random() < 0.03 else "no"])
            truth.append(("newsletter", p["email"] + ":spring-2025", str(p["id"])))
with open("truth/person_map.csv", "w", newline="") as f:
    csv.writer(f).writerows(truth)
print(len(people), "people;", len(pos_rows), "POS cards;", len(shop_rows), "shop accounts;", len(sales), "sales;", len(orders), "web orders")
