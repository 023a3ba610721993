"""Word lists the simulator's data generator draws from.

Plain constants, no logic: changing a list changes the generated data of every seed.
"""

from __future__ import annotations

FIRST_NAMES = (
    "Avery", "Blake", "Carmen", "Dana", "Elena", "Felix", "Grace", "Hector", "Iris", "Jamal",
    "Keiko", "Liam", "Maya", "Noah", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tara",
    "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zane", "Brooke", "Caleb", "Dmitri", "Esther",
    "Farah", "Gideon", "Hana", "Ivan", "Jolene", "Kofi", "Lucia", "Marcus", "Nadia", "Owen",
)  # fmt: skip

LAST_NAMES = (
    "Anderson", "Baker", "Castillo", "Dawson", "Ellis", "Fischer", "Garcia", "Hughes", "Ibarra",
    "Jensen", "Kowalski", "Lopez", "Morgan", "Nguyen", "O'Brien", "Patel", "Quintero", "Reyes",
    "Sullivan", "Thompson", "Underwood", "Vasquez", "Whitaker", "Xu", "Young", "Zimmerman",
    "Brennan", "Choi", "Delgado", "Okafor", "Haddad", "Lindqvist", "Moreau", "Novak",
)  # fmt: skip

STREET_NAMES = (
    "Oak", "Maple", "Cedar", "Pine", "Willow", "Magnolia", "Harbor", "Sunset", "Ridge", "Lakeview",
    "Meadow", "River", "Bluff", "Dogwood", "Cypress", "Palmetto", "Juniper", "Aspen", "Bayshore",
    "Canyon", "Heron", "Pelican", "Sandpiper", "Summit", "Hollow", "Orchard", "Chestnut", "Laurel",
)  # fmt: skip

STREET_KINDS = ("St", "Ave", "Rd", "Ln", "Dr", "Ct", "Way", "Blvd", "Trail", "Pl")

# (city, state, zip prefix, latitude, longitude)
CITIES = (
    ("Nashville", "TN", "372", 36.1627, -86.7816),
    ("Gatlinburg", "TN", "377", 35.7143, -83.5102),
    ("Destin", "FL", "325", 30.3935, -86.4958),
    ("Miramar Beach", "FL", "325", 30.3744, -86.3586),
    ("Key West", "FL", "330", 24.5551, -81.7800),
    ("Asheville", "NC", "288", 35.5951, -82.5515),
    ("Outer Banks", "NC", "279", 35.5582, -75.4665),
    ("Myrtle Beach", "SC", "295", 33.6891, -78.8867),
    ("Park City", "UT", "840", 40.6461, -111.4980),
    ("Breckenridge", "CO", "804", 39.4817, -106.0384),
    ("Lake Tahoe", "CA", "961", 39.0968, -120.0324),
    ("Scottsdale", "AZ", "852", 33.4942, -111.9261),
    ("Cape Cod", "MA", "026", 41.6688, -70.2962),
    ("Bar Harbor", "ME", "046", 44.3876, -68.2039),
    ("Sedona", "AZ", "863", 34.8697, -111.7610),
    ("Galveston", "TX", "775", 29.3013, -94.7977),
)  # fmt: skip

PROPERTY_ADJECTIVES = (
    "Cozy", "Sunny", "Hidden", "Grand", "Rustic", "Modern", "Quiet", "Breezy", "Golden", "Serene",
    "Coastal", "Historic", "Charming", "Secluded", "Bright", "Spacious",
)  # fmt: skip

PROPERTY_NOUNS = (
    "Cottage", "Retreat", "Bungalow", "Cabin", "Villa", "Loft", "Hideaway", "Lodge", "Condo",
    "Townhome", "Chalet", "Beach House", "Farmhouse", "Studio", "Penthouse", "Getaway",
)  # fmt: skip

COMPANY_NAMES = (
    "Blue Ridge Vacation Rentals", "Gulf Coast Stays", "Music City Homes", "Summit Peak Lodging",
    "Harborline Hospitality", "Desert Bloom Rentals", "Lakeside Getaways", "Pinecone Property Care",
    "Saltwater Escapes", "Canyon View Stays", "Magnolia Host Co", "Northwind Rentals",
)  # fmt: skip

GROUP_NAMES = (
    "Downtown",
    "Beachfront",
    "Mountain",
    "Lakefront",
    "Premium",
    "Pet Friendly",
    "Owner Managed",
)

NOTE_ABOUT = (
    "Sleeps {n} comfortably with a fully equipped kitchen and private patio.",
    "Walking distance to restaurants and shops; free parking for two cars.",
    "Quiet street, fenced yard, grill on the back deck.",
    "Renovated last spring: new floors, new linens, smart lock on the front door.",
)
NOTE_ACCESS = (
    "Lockbox on the side gate, code changes per stay.",
    "Smart lock; the code is sent 24 hours before arrival.",
    "Key in the lockbox left of the garage door.",
    "Front desk holds the key fob; show ID.",
)
NOTE_TRASH = (
    "Trash pickup Tuesday morning; bins go to the curb Monday night.",
    "Dumpster behind building B.",
    "Recycling Friday, trash Monday and Thursday.",
)

DEPARTMENTS = ("housekeeping", "inspection", "maintenance", "safety")

# (code, name, stage)
TASK_STATUSES = (
    ("created", "Created", "new"),
    ("assigned", "Assigned", "new"),
    ("in_progress", "In Progress", "in_progress"),
    ("finished", "Finished", "finished"),
    ("approved", "Approved", "finished"),
)
TASK_PRIORITIES = ("low", "normal", "normal", "normal", "high", "urgent")

TASK_NAMES = {
    "housekeeping": ("Departure Clean", "Mid-Stay Clean", "Deep Clean", "Linen Refresh", "Hot Tub Clean"),
    "inspection": ("Pre-Arrival Inspection", "Quality Inspection", "Owner Walkthrough", "Damage Check"),
    "maintenance": ("Replace HVAC Filter", "Fix Leaking Faucet", "Pool Service", "Pest Control",
                    "Replace Smoke Detector Batteries", "Repair Deck Railing", "Landscaping"),
    "safety": ("Fire Extinguisher Check", "CO Detector Test", "Safety Audit"),
}  # fmt: skip

TASK_DESCRIPTIONS = (
    "Follow the standard checklist for this property. Photograph every room when done and report any damage.",
    "Guest reported an issue during the stay; verify, fix if possible, and leave a note for the owner.",
    "Restock consumables (coffee, paper towels, toiletries) from the owner closet and record quantities.",
    "Check all appliances, lights and remotes. Replace dead batteries. Confirm Wi-Fi works with the posted password.",
    "Seasonal task requested by the owner. Coordinate access with the office before starting.",
)

SUBDEPARTMENTS = ("Turnover", "Preventive", "Reactive", "Owner Request", "Guest Request")

SUPPLY_NAMES = (
    "Toilet Paper (12 pack)", "Paper Towels", "Dish Soap", "Laundry Detergent", "Coffee Pods",
    "Shampoo (travel)", "Conditioner (travel)", "Body Wash", "Trash Bags 13gal", "Sponges",
    "AA Batteries", "HVAC Filter 20x25", "Light Bulbs LED", "Hand Soap Refill", "Bleach Wipes",
    "Dishwasher Pods", "Bath Towel", "Hand Towel", "King Sheet Set", "Queen Sheet Set",
)  # fmt: skip
SUPPLY_SIZES = ("small", "medium", "large", "each", "case", "12 oz", "1 gal")
STOCK_STATUSES = (
    ("in_stock", "In Stock"),
    ("low_stock", "Low Stock"),
    ("out_of_stock", "Out of Stock"),
)

TAG_WORDS = (
    "VIP", "Owner", "Repeat Guest", "Late Checkout", "Early Checkin", "Pet", "Hot Tub", "Pool",
    "Urgent", "Follow Up", "Damage", "Deep Clean", "Inspection Failed", "Lockbox", "Smart Lock",
    "Long Stay", "Event", "Accessible", "Oceanfront", "Ski In", "Photos Needed", "Linen Swap",
)  # fmt: skip

RESERVATION_SOURCES = ("airbnb", "vrbo", "booking.com", "direct", "expedia", "owner")
GUEST_TYPES = (("guest", "Guest"), ("owner", "Owner"), ("friend_of_owner", "Friend of Owner"))
STAY_TYPES = (("standard", "Standard"), ("long_term", "Long Term"), ("owner_stay", "Owner Stay"))
RESERVATION_NOTES = (
    "Arriving late, around 11pm.",
    "Celebrating an anniversary; please leave a card.",
    "Bringing one small dog (approved).",
    "Needs a crib and high chair.",
    "",
)

ROLES = ("admin", "manager", "cleaner", "inspector", "maintenance", "contractor")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
COST_TYPES = (("labor", "Labor"), ("materials", "Materials"), ("trip_fee", "Trip Fee"))
