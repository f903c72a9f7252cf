//! Name, street and city lists. Every character is in latin-1, so the legacy extract can hold it.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "José", "Zoë", "François", "Anaïs", "Jürgen", "Søren", "Björn", "Renée", "Chloé", "Inés", "Ángel", "Noémie",
    "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth", "David",
    "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Daniel",
    "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Margaret", "Paul", "Sandra", "Steven", "Ashley",
    "Andrew", "Emily", "Kenneth", "Donna", "Joshua", "Michelle", "Kevin", "Carol", "Brian", "Amanda", "George",
    "Melissa", "Edward", "Deborah", "Ronald", "Stephanie", "Timothy", "Rebecca", "Jason", "Laura", "Jeffrey",
    "Sharon", "Ryan", "Cynthia", "Jacob", "Kathleen", "Gary", "Amy", "Nicholas", "Shirley", "Eric", "Angela",
    "Jonathan", "Helen", "Stephen", "Anna", "Larry", "Brenda", "Justin", "Pamela", "Scott", "Nicole", "Frank",
    "Emma", "Brandon", "Samantha", "Benjamin", "Katherine", "Gregory", "Christine", "Samuel", "Debra",
    "Raymond", "Rachel", "Patrick", "Catherine", "Alexander", "Carolyn", "Jack", "Janet", "Dennis", "Ruth",
    "Jerry", "Maria", "Tyler", "Heather", "Aaron", "Diane", "Henry", "Virginia", "Douglas", "Julie", "Peter",
    "Joyce", "Adam", "Victoria", "Nathan", "Olivia", "Zachary", "Kelly", "Walter", "Christina", "Kyle", "Lauren",
    "Harold", "Joan", "Carl", "Evelyn", "Jeremy", "Judith", "Keith", "Megan", "Roger", "Cheryl", "Gerald",
    "Andrea", "Ethan", "Hannah", "Arthur", "Martha", "Terry", "Jacqueline", "Christian", "Frances", "Sean",
    "Gloria", "Lawrence", "Ann", "Austin", "Teresa", "Joe", "Kathryn", "Noah", "Sara", "Jesse", "Janice",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Müller", "García", "Núñez", "Søndergaard", "Ångström", "Béranger", "Lefèvre", "Gonçalves", "Schröder",
    "O'Brien", "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
    "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart",
    "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks",
    "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jiménez", "Powell", "Jenkins", "Perry", "Russell",
    "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes", "Gonzales", "Fisher", "Vasquez", "Simmons",
    "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham", "Reynolds", "Griffin", "Wallace",
    "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina", "Aguilar",
    "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez", "McDonald", "Woods",
];

pub(crate) const STREETS: &[&str] = &[
    "High", "Station", "Main", "Park", "Church", "London", "Victoria", "Green", "Manor", "Kings", "Queens",
    "Mill", "New", "School", "Grange", "North", "South", "West", "East", "Springfield", "Albert", "Windsor",
    "Highfield", "York", "Chester", "Oak", "Elm", "Maple", "Cedar", "Willow", "Birch", "Ash", "Lime", "Beech",
];

pub(crate) const STREET_TYPES: &[(&str, &str)] = &[
    ("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Drive", "Dr"), ("Close", "Cl"),
    ("Way", "Way"), ("Gardens", "Gdns"),
];

/// City and postcode area.
pub(crate) const CITIES: &[(&str, &str)] = &[
    ("London", "SW"), ("Manchester", "M"), ("Birmingham", "B"), ("Leeds", "LS"), ("Glasgow", "G"),
    ("Liverpool", "L"), ("Bristol", "BS"), ("Sheffield", "S"), ("Edinburgh", "EH"), ("Cardiff", "CF"),
    ("Leicester", "LE"), ("Nottingham", "NG"), ("Newcastle", "NE"), ("Brighton", "BN"), ("Oxford", "OX"),
    ("Cambridge", "CB"), ("York", "YO"), ("Bath", "BA"), ("Exeter", "EX"), ("Norwich", "NR"),
];

pub(crate) const EMAIL_DOMAINS: &[&str] = &[
    "example.com", "mail.example.org", "post.example.net", "inbox.example.co.uk", "example.io",
];
