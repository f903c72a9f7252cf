//! Name, street and city lists. Every character is in latin-1, so the legacy extract can hold it.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "José",
    "Zoë",
    "François",
    "Anaïs",
    "Jürgen",
    "Søren",
    "Björn",
    "Renée",
    "Chloé",
    "Inés",
    "Ángel",
    "Noémie",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Margaret",
    "Paul",
    "Sandra",
    "Steven",
    "Ashley",
    "Andrew",
    "Emily",
    "Kenneth",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Edward",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Timothy",
    "Rebecca",
    "Jason",
    "Laura",
    "Jeffrey",
    "Sharon",
    "Ryan",
    "Cynthia",
    "Jacob",
    "Kathleen",
    "Gary",
    "Amy",
    "Nicholas",
    "Shirley",
    "Eric",
    "Angela",
    "Jonathan",
    "Helen",
    "Stephen",
    "Anna",
    "Larry",
    "Brenda",
    "Justin",
    "Pamela",
    "Scott",
    "Nicole",
    "Frank",
    "Emma",
    "Brandon",
    "Samantha",
    "Benjamin",
    "Katherine",
    "Gregory",
    "Christine",
    "Samuel",
    "Debra",
    "Raymond",
    "Rachel",
    "Patrick",
    "Catherine",
    "Alexander",
    "Carolyn",
    "Jack",
    "Janet",
    "Dennis",
    "Ruth",
    "Jerry",
    "Maria",
    "Tyler",
    "Heather",
    "Aaron",
    "Diane",
    "Henry",
    "Virginia",
    "Douglas",
    "Julie",
    "Peter",
    "Joyce",
    "Adam",
    "Victoria",
    "Nathan",
    "Olivia",
    "Zachary",
    "Kelly",
    "Walter",
    "Christina",
    "Kyle",
    "Lauren",
    "Harold",
    "Joan",
    "Carl",
    "Evelyn",
    "Jeremy",
    "Judith",
    "Keith",
    "Megan",
    "Roger",
    "Cheryl",
    "Gerald",
    "Andrea",
    "Ethan",
    "Hannah",
    "Arthur",
    "Martha",
    "Terry",
    "Jacqueline",
    "Christian",
    "Frances",
    "Sean",
    "Gloria",
    "Lawrence",
    "Ann",
    "Austin",
    "Teresa",
    "Joe",
    "Kathryn",
    "Noah",
    "Sara",
    "Jesse",
    "Janice",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Müller",
    "García",
    "Núñez",
    "Søndergaard",
    "Ångström",
    "Béranger",
    "Lefèvre",
    "Gonçalves",
    "Schröder",
    "O'Brien",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Jiménez",
    "Powell",
    "Jenkins",
    "Perry",
    "Russell",
    "Sullivan",
    "Bell",
    "Coleman",
    "Butler",
    "Henderson",
    "Barnes",
    "Gonzales",
    "Fisher",
    "Vasquez",
    "Simmons",
    "Romero",
    "Jordan",
    "Patterson",
    "Alexander",
    "Hamilton",
    "Graham",
    "Reynolds",
    "Griffin",
    "Wallace",
    "Moreno",
    "West",
    "Cole",
    "Hayes",
    "Bryant",
    "Herrera",
    "Gibson",
    "Ellis",
    "Tran",
    "Medina",
    "Aguilar",
    "Stevens",
    "Murray",
    "Ford",
    "Castro",
    "Marshall",
    "Owens",
    "Harrison",
    "Fernandez",
    "McDonald",
    "Woods",
];

pub(crate) const STREETS: &[&str] = &[
    "High",
    "Station",
    "Main",
    "Park",
    "Church",
    "London",
    "Victoria",
    "Green",
    "Manor",
    "Kings",
    "Queens",
    "Mill",
    "New",
    "School",
    "Grange",
    "North",
    "South",
    "West",
    "East",
    "Springfield",
    "Albert",
    "Windsor",
    "Highfield",
    "York",
    "Chester",
    "Oak",
    "Elm",
    "Maple",
    "Cedar",
    "Willow",
    "Birch",
    "Ash",
    "Lime",
    "Beech",
];

pub(crate) const STREET_TYPES: &[(&str, &str)] = &[
    ("Street", "St"),
    ("Road", "Rd"),
    ("Avenue", "Ave"),
    ("Lane", "Ln"),
    ("Drive", "Dr"),
    ("Close", "Cl"),
    ("Way", "Way"),
    ("Gardens", "Gdns"),
];

/// City and postcode area.
pub(crate) const CITIES: &[(&str, &str)] = &[
    ("London", "SW"),
    ("Manchester", "M"),
    ("Birmingham", "B"),
    ("Leeds", "LS"),
    ("Glasgow", "G"),
    ("Liverpool", "L"),
    ("Bristol", "BS"),
    ("Sheffield", "S"),
    ("Edinburgh", "EH"),
    ("Cardiff", "CF"),
    ("Leicester", "LE"),
    ("Nottingham", "NG"),
    ("Newcastle", "NE"),
    ("Brighton", "BN"),
    ("Oxford", "OX"),
    ("Cambridge", "CB"),
    ("York", "YO"),
    ("Bath", "BA"),
    ("Exeter", "EX"),
    ("Norwich", "NR"),
];

pub(crate) const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "post.example.net",
    "inbox.example.co.uk",
    "example.io",
];

/// Given names and a nickname people register under.
pub(crate) const NICKNAMES: &[(&str, &str)] = &[
    ("Christopher", "Chris"),
    ("Daniel", "Dan"),
    ("David", "Dave"),
    ("Elizabeth", "Liz"),
    ("James", "Jim"),
    ("Jennifer", "Jen"),
    ("Joseph", "Joe"),
    ("Margaret", "Peggy"),
    ("Michael", "Mike"),
    ("Patricia", "Pat"),
    ("Richard", "Rick"),
    ("Robert", "Bob"),
    ("Susan", "Sue"),
    ("Thomas", "Tom"),
    ("William", "Bill"),
];

/// Suburbs of the Australian demo; each postcode has two or three of them.
pub(crate) const AU_SUBURBS: &[&str] = &[
    "Parramatta",
    "Chatswood",
    "Bondi",
    "Randwick",
    "Manly",
    "Penrith",
    "Liverpool",
    "Blacktown",
    "Hornsby",
    "Cronulla",
    "Richmond",
    "Carlton",
    "Fitzroy",
    "St Kilda",
    "Brunswick",
    "Footscray",
    "Dandenong",
    "Frankston",
    "Box Hill",
    "Geelong",
    "Toowong",
    "Indooroopilly",
    "Chermside",
    "Carindale",
    "Southport",
    "Fremantle",
    "Subiaco",
    "Joondalup",
    "Glenelg",
    "Norwood",
    "Unley",
    "Sandy Bay",
    "Belconnen",
    "Tuggeranong",
    "Newtown",
    "Marrickville",
    "Ryde",
    "Kogarah",
    "Hurstville",
    "Bankstown",
    "Campbelltown",
    "Wollongong",
    "Maitland",
    "Ballarat",
    "Bendigo",
    "Toowoomba",
    "Cairns",
    "Townsville",
    "Darwin",
    "Launceston",
];

/// Cities of the American demo; a ZIP code belongs to one of them.
pub(crate) const US_CITIES: &[&str] = &[
    "Springfield",
    "Riverside",
    "Franklin",
    "Greenville",
    "Bristol",
    "Clinton",
    "Fairview",
    "Salem",
    "Madison",
    "Georgetown",
    "Arlington",
    "Ashland",
    "Dover",
    "Oxford",
    "Jackson",
    "Burlington",
    "Manchester",
    "Milton",
    "Newport",
    "Auburn",
    "Dayton",
    "Lexington",
    "Milford",
    "Winchester",
    "Columbus",
    "Houston",
    "Phoenix",
    "Denver",
    "Austin",
    "Portland",
];

/// How many surnames the realistic demo draws from: the listed ones, then made-up ones.
pub(crate) const SURNAME_RANKS: usize = 20_000;

/// Zipf's offset: the weight of the surname of rank `r` (from 1) is `1 / (r + ZIPF_OFFSET)`. With
/// 20,000 ranks this makes the commonest surname 1.2% of people (Smith's share in Britain), the
/// hundred commonest 31% and the thousand commonest 61%: more concentrated than the British or
/// Australian registers (about 19% and 45%), so namesakes are a little more common than in life.
const ZIPF_OFFSET: f64 = 10.0;

/// The surnames of the realistic demo, drawn with the skew of a real population: a few very common
/// ones and a long tail. (The simple demo draws uniformly from [`LAST_NAMES`], which makes two
/// random people share a surname one time in 153; here one time in about 600.)
pub(crate) struct Surnames {
    /// Cumulative weights by rank, from 0.
    cumulative: Vec<f64>,
}

impl Surnames {
    pub(crate) fn new() -> Self {
        let mut total = 0.0;
        let cumulative = (0..SURNAME_RANKS)
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0 + ZIPF_OFFSET);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// A surname drawn by its frequency.
    pub(crate) fn pick(&self, rng: &mut impl rand::Rng) -> String {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        let rank = self
            .cumulative
            .partition_point(|c| *c <= u)
            .min(SURNAME_RANKS - 1);
        surname_of_rank(rank)
    }
}

const ONSETS: &[&str] = &[
    "Br", "Dr", "K", "M", "V", "St", "H", "L", "R", "T", "G", "P", "B", "D", "F", "N", "S", "W",
    "Ch", "Gr", "Th", "Sh", "Bl", "Cr", "J", "Z", "Y", "Kr", "Pr", "Tr",
];
const MIDDLES: &[&str] = &[
    "an", "ar", "el", "en", "or", "il", "ol", "un", "er", "ad", "im", "os", "ev", "al", "ur", "ak",
    "in", "ob", "es", "ag", "av", "ir", "on", "ul", "et",
];
const ENDINGS: &[&str] = &[
    "ley", "ton", "son", "ford", "berg", "ski", "ov", "enko", "etti", "ard", "ell", "ner", "man",
    "ic", "ova", "ani", "ez", "ing", "wood", "by", "ham", "field", "more", "worth", "dale",
    "hurst", "land", "ridge", "croft", "stein",
];

/// The surname of frequency rank `rank` (from 0): the listed surnames first (the accented ones a
/// little down the list), then made-up ones ("Branenko", "Stolski"), each rank its own.
pub(crate) fn surname_of_rank(rank: usize) -> String {
    let listed = LAST_NAMES.len();
    if rank < listed {
        return LAST_NAMES[(rank + 12) % listed].to_string();
    }
    // A bijection of the ranks onto the combinations, so that neighbouring ranks do not share
    // their start (7,919 is a prime that shares no factor with the 22,500 combinations).
    let combinations = ONSETS.len() * MIDDLES.len() * ENDINGS.len();
    let i = ((rank - listed) * 7_919) % combinations;
    let (onset, rest) = (i % ONSETS.len(), i / ONSETS.len());
    let (middle, ending) = (rest % MIDDLES.len(), rest / MIDDLES.len());
    format!("{}{}{}", ONSETS[onset], MIDDLES[middle], ENDINGS[ending])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn made_up_surnames_are_distinct_and_the_draw_is_skewed() {
        let names: std::collections::BTreeSet<String> =
            (0..SURNAME_RANKS).map(surname_of_rank).collect();
        // A made-up name may equal a listed one only by chance; almost all ranks are their own.
        assert!(names.len() > SURNAME_RANKS - 20, "{} distinct", names.len());
        let surnames = Surnames::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::<String, u32>::new();
        let draws = 200_000;
        for _ in 0..draws {
            *counts.entry(surnames.pick(&mut rng)).or_default() += 1;
        }
        let top = counts.get(&surname_of_rank(0)).copied().unwrap_or(0);
        let share = f64::from(top) / f64::from(draws);
        assert!((0.010..0.014).contains(&share), "commonest share {share}");
        // Two random people share a surname far less often than one time in 153 (uniform draw).
        let same: f64 = counts
            .values()
            .map(|c| (f64::from(*c) / f64::from(draws)).powi(2))
            .sum();
        assert!(same < 1.0 / 400.0 && same > 1.0 / 1_000.0, "{same}");
    }
}
