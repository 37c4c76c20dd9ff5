"""Generate a realistic local feed corpus (and a watcher config for it), deterministically.

    python benchmarks/gen_feeds.py generate --n 1000 --seed 1 --out benchmarks/out
    python benchmarks/gen_feeds.py mutate --fraction 0.1 --entries 3 --round 1 --out benchmarks/out

`generate` writes <out>/feeds/feed-0000.xml ... (RSS 2.0 and Atom, about 70/30, 30 items
each), <out>/watcher.toml (every feed as http://127.0.0.1:<port>/feeds/feed-XXXX.xml,
20 topics, one webhook channel) and <out>/manifest.json (what `mutate` needs).

`mutate` adds `--entries` new items to a `--fraction` of the feeds, chosen from the seed
and the round number, drops the oldest so each feed keeps 30 items, and rewrites those
files atomically (new mtime and size, so nginx's ETag and Last-Modified change).

Items are news-like prose built from sentence templates: world news, about 10% in Russian
or Ukrainian, a share about Kursk/Sumy evacuations and the Red Cross/ICRC so that the two
example topics of DESIGN.md have real hits, and "the same story" told by several feeds
in different words (with the occasional republished link carrying utm_ parameters), so
that dedupe has work. Every item is a pure function of (seed, round, feed, item number).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, REPO_DIR, log

ITEMS_PER_FEED = 30
DEFAULT_ANCHOR = "2025-02-24T12:00:00+00:00"
FEED_PORT = 8089
HOOK_PORT = 8090

# --- word bank ---------------------------------------------------------------------------

CITIES = ["Geneva", "Brussels", "Nairobi", "Jakarta", "Lima", "Warsaw", "Ankara", "Manila",
          "Lagos", "Santiago", "Hanoi", "Athens", "Dhaka", "Quito", "Tbilisi", "Accra",
          "Lisbon", "Seoul", "Vienna", "Karachi", "Bogota", "Helsinki", "Amman", "Kampala",
          "Osaka", "Valencia", "Marseille", "Gdansk", "Porto", "Izmir", "Cebu", "Mombasa"]
COUNTRIES = ["Kenya", "Indonesia", "Peru", "Poland", "Turkey", "the Philippines", "Nigeria",
             "Chile", "Vietnam", "Greece", "Bangladesh", "Ecuador", "Georgia", "Ghana",
             "Portugal", "South Korea", "Austria", "Pakistan", "Colombia", "Finland", "Jordan",
             "Uganda", "Japan", "Spain", "Italy", "Morocco", "Canada", "Brazil"]
VILLAGES = ["Sudzha", "Glushkovo", "Tetkino", "Korenevo", "Lgov", "Rylsk", "Belaya",
            "Gornal", "Plekhovo", "Martynovka"]
SUMY_TOWNS = ["Sumy", "Shostka", "Okhtyrka", "Bilopillia", "Krasnopillia", "Vorozhba",
              "Trostianets", "Seredyna-Buda"]
FIRST = ["Anna", "Pedro", "Amina", "Lukas", "Mei", "Oleksandr", "Tatyana", "Kwame", "Sofia",
         "Rahul", "Elena", "Jonas", "Fatima", "Diego", "Ingrid", "Tomasz", "Leila", "Hiroshi",
         "Grace", "Mateo", "Alexander", "Nadia", "Samuel", "Yusuf"]
LAST = ["Moreno", "Kowalski", "Okafor", "Nguyen", "Schmidt", "Haddad", "Petrenko", "Ito",
        "Mensah", "Silva", "Lindqvist", "Rossi", "Demir", "Castillo", "Novak", "Khan",
        "Moskalkova", "Khinshtein", "Barros", "Adeyemi", "Jensen", "Park"]
AGENCIES = ["Reuters", "AFP", "AP", "dpa", "EFE", "ANSA", "Kyodo"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TEAMS = ["City", "United", "Rovers", "Athletic", "Olympic", "Sporting", "Dynamo", "Wanderers"]
COMPANIES = ["Nordlys Energy", "Pacifica Foods", "Helix Semiconductors", "Atlas Logistics",
             "Verdant Pharma", "Orion Telecom", "Meridian Bank", "Solace Airlines",
             "Kestrel Motors", "Bluewater Shipping", "Tamarind Retail", "Quanta Robotics",
             "Sable Insurance", "Cobalt Mining", "Lumen Media", "Harbor Steel"]
PRODUCTS = ["smartphone chip", "solid-state battery", "solar panels", "heat pumps",
            "electric scooter", "satellite modem", "AI assistant", "smart thermostat",
            "folding phone", "e-reader", "home battery", "drone camera"]
THEMES = ["coastal fishermen", "family and exile", "a border town", "a forgotten painter",
          "two sisters", "climate migration", "a factory closure", "first love in wartime",
          "a village choir", "an island ferry"]
AGENCIES_UN = ["the World Health Organization", "UNICEF", "the UN refugee agency",
               "the World Food Programme", "the International Organization for Migration"]

# Subjects: (title templates, sentences). Slots are filled from a story's values so every
# feed telling the same story gets the same names and numbers in different words.
SUBJECTS: dict[str, tuple[list[str], list[str]]] = {
    "kursk": ([
        "Russia says {n} residents evacuated from Kursk border villages overnight",
        "Kursk evacuation widens as {n} more civilians leave frontline districts",
        "Officials order Kursk evacuation of {n} residents from {village} and nearby villages",
        "Moscow and Kyiv agree to evacuate {n} Kursk residents via Belarus, ombudsman says",
        "{n} civilians evacuated from {village} as fighting continues in the Kursk region",
        "Acting governor says buses are ready to evacuate Kursk residents from {village}",
    ], [
        "Authorities in the Kursk region said {n} people, including {n2} children, had been "
        "moved to temporary accommodation centres.",
        "The Kursk evacuation was announced after overnight shelling damaged power lines and "
        "a school in {village}.",
        "Officials said they would evacuate Kursk residents living within {km} kilometres of "
        "the border.",
        "Buses left {village} on {weekday} morning, and volunteers said more departures were "
        "planned for the coming days.",
        "Acting governor {person} said on Telegram that {n2} evacuees were staying with "
        "relatives.",
        "Russia's human rights commissioner said the Red Cross had helped arrange the return "
        "of {n2} civilians.",
    ]),
    "sumy": ([
        "Shelling of Sumy damages {n} homes and cuts power, regional officials say",
        "Sumy shelling kills {n2} people as border villages are urged to leave",
        "Ukraine orders evacuation of {n} children from villages in the Sumy region",
        "Sumy regional authorities report {n} strikes on border communities in one day",
        "Residents of {sumy_town} shelter in basements as shelling of Sumy region intensifies",
    ], [
        "The regional military administration said Sumy shelling had hit {n2} settlements "
        "along the border.",
        "Ukrainian officials ordered the evacuation of families with children from {n2} "
        "villages in the Sumy region.",
        "Emergency crews in {sumy_town} worked through the night to restore electricity after "
        "the shelling.",
        "Residents described hearing explosions for several hours before sirens sounded "
        "across the city.",
        "About {n} people have left the border area since the start of the month, officials "
        "said.",
    ]),
    "redcross": ([
        "Red Cross repatriation brings {n2} civilians home after months of negotiations",
        "ICRC says it helped repatriate {n} prisoners of war in the latest exchange",
        "International Committee of the Red Cross calls for safe access to {n} civilians",
        "ICRC repatriation of {n} bodies completed under humanitarian agreement",
        "Red Cross delivers medical supplies to {n} families near the frontline",
    ], [
        "The International Committee of the Red Cross (ICRC) said it had acted as a neutral "
        "intermediary.",
        "An ICRC spokesperson in Geneva said the repatriation had taken weeks of quiet "
        "diplomacy.",
        "The Red Cross repatriation included elderly residents and {n2} people in need of "
        "medical care.",
        "Red Cross teams delivered food, water and hygiene kits to {n} households.",
        "Humanitarian workers said access to the area remained difficult and unpredictable.",
        "Belarus and Qatar were named as mediators in the arrangement.",
    ]),
    "history": ([
        "{n} veterans gather in Kursk to mark anniversary of the Battle of Kursk",
        "Museum in {city} opens exhibition on the Kursk submarine disaster of 2000",
        "Historian {person} revisits the Battle of Kursk, the largest tank battle",
    ], [
        "The Battle of Kursk in 1943 is remembered as one of the largest tank battles in "
        "history.",
        "Relatives of the Kursk submarine crew laid flowers at a memorial on {weekday}.",
        "The exhibition includes letters, photographs and uniforms donated by {n} families.",
    ]),
    "prisoners": ([
        "Russia and Ukraine carry out prisoner exchange involving {n} soldiers",
        "Prisoner swap returns {n} Ukrainian defenders home, Zelensky says",
        "Mediators confirm prisoner exchange of {n} captives after talks in {city}",
    ], [
        "The prisoner exchange was mediated by the United Arab Emirates, officials said.",
        "Among those released were {n2} wounded servicemen and several civilians.",
        "Families waited for hours at the border crossing to greet the returning soldiers.",
    ]),
    "rates": ([
        "Central bank raises interest rates to {pct}% as inflation stays stubborn",
        "{country} central bank cuts interest rates to {pct}% for the first time this year",
        "Markets brace for interest rate decision as inflation slows to {pct}% in {country}",
        "Policymakers hold rates at {pct}% but signal a cut may come in spring",
    ], [
        "The bank's governor said inflation was expected to return to target next year.",
        "Economists had widely expected the interest rate decision after weak retail data.",
        "The currency rose {small}% against the dollar after the announcement.",
        "Mortgage lenders said they would review their fixed-rate offers in the coming days.",
    ]),
    "wildfire": ([
        "Wildfire evacuation ordered for {n} homes as winds fan flames near {city}",
        "Firefighters battle forest fire on the outskirts of {city} for a third day",
        "{n} families flee as wildfires spread across southern {country}",
    ], [
        "More than {n} firefighters and {n2} aircraft were deployed overnight.",
        "Officials issued a wildfire evacuation order for several neighbourhoods.",
        "Dry conditions and strong gusts have made the forest fire hard to contain.",
    ]),
    "quake": ([
        "Magnitude {mag} earthquake strikes off the coast of {country}, {n2} hurt",
        "Earthquake shakes {city}, damaging buildings and cutting power to {n} homes",
        "Tsunami warning lifted after magnitude {mag} earthquake near {city}",
    ], [
        "The quake struck at a depth of {km} kilometres, according to the geological survey.",
        "Residents ran into the streets as buildings swayed for several seconds.",
        "A tsunami warning was issued and later withdrawn for coastal areas.",
    ]),
    "floods": ([
        "Flash floods sweep through {city} after {n} millimetres of rain overnight",
        "Flood warning issued for {n} towns as rivers burst their banks in {country}",
        "Rescuers search for missing after flash floods hit villages near {city}",
    ], [
        "Meteorologists said more rain was expected over the weekend.",
        "Rescue teams used boats to reach {n2} families stranded on rooftops.",
        "A flood warning remains in place for low-lying districts.",
    ]),
    "election": ([
        "Preliminary results show opposition on {pct2}% in {country} parliamentary election",
        "Election results delayed in {country} as counting continues in {n2} districts",
        "Ruling party claims {pct2}% as election results come in across {country}",
    ], [
        "Turnout was estimated at {pct2}%, the electoral commission said.",
        "Observers said voting had been largely peaceful despite isolated incidents.",
        "The final election results are expected by {weekday}.",
    ]),
    "grain": ([
        "Grain exports through Black Sea ports rise to {n} thousand tonnes in a week",
        "{country} signs deal to boost grain exports to {country2} by {pct2}%",
        "Black Sea grain shipments resume after {n2}-day halt over security concerns",
    ], [
        "Traders said wheat prices fell {small}% on the news.",
        "About {n} thousand tonnes of grain left port last week, officials said.",
        "Insurers have raised premiums for ships sailing through the area.",
    ]),
    "cholera": ([
        "Cholera outbreak spreads to {n2} districts in {country} as officials appeal for vaccines",
        "Health ministry confirms cholera outbreak with {n} cases in camps near {city}",
    ], [
        "{un_agency} said it was sending oral vaccines and water purification tablets.",
        "At least {n2} deaths and {n} suspected cases have been recorded.",
        "Doctors said poor sanitation had allowed the cholera outbreak to spread quickly.",
    ]),
    "drone": ([
        "Drone attack sets fire to fuel depot near {city}, {n2} injured, officials say",
        "Air defences shoot down {n2} drones overnight in a large-scale drone attack",
    ], [
        "Debris from intercepted drones damaged {n2} houses, the regional governor said.",
        "No casualties were reported after the drone attack, according to local officials.",
        "Firefighters needed several hours to put out the blaze at the depot.",
    ]),
    "power": ([
        "Power outages hit {n} thousand homes after storm damages lines in {country}",
        "Rolling blackouts return to {city} as demand outstrips supply by {pct2}%",
    ], [
        "The grid operator said repairs could take several days.",
        "Businesses said the blackouts were costing them customers and stock.",
        "Hospitals switched to backup generators during the power outages.",
    ]),
    "refugees": ([
        "{n} asylum seekers arrive in {city} as reception centres near capacity",
        "{country} registers {n} new refugees in a week, UN agency says",
    ], [
        "{un_agency} said it was scaling up support at border crossings.",
        "Many of the refugees arrived with little more than a bag of belongings.",
        "Local volunteers set up kitchens and clothing stores for the new arrivals.",
    ]),
    "oil": ([
        "Oil prices climb {small}% as producers signal further output cuts",
        "Brent crude falls below ${n2} a barrel on demand worries",
    ], [
        "Brent crude futures rose {small}% in early trading in London.",
        "Analysts said oil prices would remain volatile until the producers' meeting.",
        "Fuel retailers warned that pump prices could rise next month.",
    ]),
    "ceasefire": ([
        "Ceasefire talks resume in {city} with mediators cautiously optimistic",
        "Peace talks in {city} stall over prisoner releases and {n} displaced people",
    ], [
        "Diplomats said the ceasefire talks would continue through the week.",
        "Both delegations accused each other of violating earlier agreements.",
        "Mediators from {country} presented a new draft proposal on {weekday}.",
    ]),
    "heat": ([
        "Heatwave pushes temperatures above {deg} degrees across southern {country}",
        "Authorities open {n2} cooling centres as heatwave grips {city}",
    ], [
        "Doctors urged elderly residents to stay indoors during the hottest hours.",
        "The national weather service said the heatwave would last until {weekday}.",
        "Farmers warned of crop losses as the dry spell continued.",
    ]),
    "boats": ([
        "Migrant boat capsizes off {country}, coast guard says {n2} missing",
        "Rescue ship brings {n2} migrants ashore after days at sea",
    ], [
        "The coast guard said {n2} survivors had been pulled from the water.",
        "Aid groups said the migrant boat had left port two days earlier.",
        "Search operations continued overnight with helicopters and patrol vessels.",
    ]),
    "cyber": ([
        "Cyberattack disrupts {n2} hospitals in {city}, patients diverted",
        "Ransomware gang claims attack on {company} and leaks internal files",
    ], [
        "The company said it had isolated affected systems and informed regulators.",
        "Security researchers linked the ransomware to a known criminal group.",
        "Patients were asked to bring paper copies of prescriptions while systems were down.",
    ]),
    "strike": ([
        "General strike halts trains and {n} flights across {country}",
        "Union strike at {company} in {city} enters its second week as talks fail",
    ], [
        "Union leaders said the strike would continue until wages were raised.",
        "Commuters faced long queues for the few buses still running.",
        "The government called the general strike irresponsible and damaging.",
    ]),
    # Beats no topic looks for: most of a real news diet.
    "football": ([
        "{city} {team} beat {city2} {team2} {g1}-{g0} to move top of the league table",
        "Late penalty earns {city} {team} a {g1}-{g1} draw against {city2} {team2}",
        "Coach {person} leaves {city} {team} after {n2} games in charge",
        "{person} scores twice as {city} {team} ease past {city2} {team2}",
    ], [
        "The visitors dominated possession but struggled to create clear chances.",
        "{person} scored twice in the second half to settle the game.",
        "The club said it would announce a new coach before the next fixture.",
        "Tickets for the next home game against {city2} {team2} sold out within hours.",
    ]),
    "tech": ([
        "{company} unveils {product} it says doubles battery life in laptops",
        "Start-up from {city} raises ${n} million to build cheaper {product}",
        "Regulators in {country} open inquiry into {company} over app store rules",
        "{company} delays launch of its {product} until the second half",
    ], [
        "The company said the product would ship to customers later this year.",
        "Investors included several large pension funds and a sovereign wealth fund.",
        "Critics said the rules made it harder for smaller developers to compete.",
        "Shares in {company} rose {small}% in afternoon trading.",
    ]),
    "culture": ([
        "Film festival in {city} opens with a documentary about {theme}",
        "Museum in {city} returns {n2} artefacts to {country} after decades",
        "Author {person} wins national prize for a novel about {theme}",
        "{person}'s new play about {theme} opens to strong reviews in {city}",
    ], [
        "The jury praised the work for its restraint and humour.",
        "The festival runs until {weekday} and features films from {n2} countries.",
        "Curators said the objects had been acquired during the colonial era.",
        "Critics singled out the lead performance by {person2}.",
    ]),
    "business": ([
        "{company} reports {pct2}% rise in quarterly profit on strong demand in {country}",
        "{company} to cut {n} jobs in {city} as part of restructuring plan",
        "Shares in {company} slide {small}% after profit warning and weaker outlook",
        "{company} agrees to buy rival {company2} for ${n} million",
    ], [
        "Chief executive {person} said the company was investing in new markets.",
        "Analysts had expected a smaller increase in revenue.",
        "The company said the job cuts would mostly affect administrative roles.",
        "The deal still needs approval from competition authorities in {country}.",
    ]),
    "science": ([
        "Astronomers in {country} spot comet {comet} that will be visible next month",
        "Researchers in {city} say new malaria vaccine cuts infections by {pct2}% in trial",
        "Scientists map a {n}-metre-deep reef off the coast of {country} for the first time",
        "Study of {n} patients in {country} links air pollution to memory loss",
    ], [
        "The findings were published in a peer-reviewed journal on {weekday}.",
        "Researchers said larger trials were needed to confirm the results.",
        "The team used underwater robots to collect {n} samples.",
        "Lead author {person} said the work had taken {n2} months.",
    ]),
    "council": ([
        "{city} council approves {n2} kilometres of new cycle lanes and bus routes",
        "Residents in {city} protest against closure of library on {street} Street",
        "Mayor {person} promises {n} new homes for {city} by 2030",
    ], [
        "Councillors voted {n2} to {small_int} in favour of the proposal.",
        "Campaigners said they had gathered {n} signatures in a petition.",
        "Work is expected to begin in the spring and last about a year.",
    ]),
}

# Share of stories by subject: about 20% on subjects a topic watches (Kursk, Sumy and the
# Red Cross the most frequent of them); the rest is ordinary news no topic looks for.
WEIGHTS = {"kursk": 1.6, "sumy": 1.0, "redcross": 1.0, "history": 0.4, "prisoners": 0.6,
           "rates": 0.5, "wildfire": 0.4, "quake": 0.4, "floods": 0.4, "election": 0.5,
           "grain": 0.4, "cholera": 0.3, "drone": 0.5, "power": 0.4, "refugees": 0.4,
           "oil": 0.5, "ceasefire": 0.5, "heat": 0.3, "boats": 0.3, "cyber": 0.4,
           "strike": 0.4, "football": 12, "tech": 10, "culture": 8, "business": 10,
           "science": 6, "council": 6}
_SUBJECT_NAMES = list(WEIGHTS)
_SUBJECT_WEIGHTS = list(WEIGHTS.values())

FILLER = [
    "The agency said it would provide further updates later in the day.",
    "{agency} could not independently verify the figures.",
    "Officials declined to comment on the details when contacted on {weekday}.",
    "The announcement came after several days of speculation in local media.",
    "It was not immediately clear how long the measures would remain in place.",
    "Opposition politicians called for a full inquiry into the response.",
    "A spokesperson said more information would be published on the ministry's website.",
    "Local residents told reporters they had been given little warning.",
    "The situation remains fluid, and numbers may change as more reports come in.",
    "Analysts said the development was likely to be discussed at next week's summit.",
]

# Cyrillic items (Russian and Ukrainian): the same stories, told in those languages. A
# story's subject picks the group; subjects without a group use "other".
CYRILLIC_GROUP = {"kursk": "kursk", "history": "kursk", "sumy": "sumy", "drone": "sumy",
                  "redcross": "redcross", "prisoners": "prisoners", "rates": "economy",
                  "oil": "economy", "business": "economy"}
RU: dict[str, tuple[list[str], list[str]]] = {
    "kursk": ([
        "Из приграничных сёл Курской области эвакуировали {n} мирных жителей",
        "Власти объявили эвакуацию жителей Курской области из {n2} населённых пунктов",
        "Эвакуация жителей Курской области продолжается: в ПВР находятся {n} человек",
        "Из Суджи вывезли {n} мирных жителей, сообщил врио губернатора",
    ], [
        "Об этом сообщил временно исполняющий обязанности губернатора региона {person}.",
        "По данным оперативного штаба, в пунктах временного размещения находятся {n} человек.",
        "Жителей вывозили автобусами в сопровождении волонтёров и сотрудников МЧС.",
        "Власти региона призвали жителей приграничных районов сохранять спокойствие.",
        "Эвакуация жителей Курской области проводится с начала месяца.",
        "Среди эвакуированных {n2} детей и несколько маломобильных граждан.",
    ]),
    "sumy": ([
        "В Сумской области после обстрела без света остались {n} домов",
        "Беспилотники атаковали приграничные районы, повреждены {n2} домов",
    ], [
        "Ранее в ведомстве сообщали о повреждении линий электропередачи.",
        "Информация о пострадавших уточняется.",
        "Энергетики восстанавливают подачу электричества в пострадавших районах.",
    ]),
    "redcross": ([
        "Красный Крест помог вернуть в Россию {n2} жителей Курской области",
        "МККК передал гуманитарную помощь {n} семьям в приграничье",
    ], [
        "Международный комитет Красного Креста выступил посредником в переговорах.",
        "Возвращение стало возможным при посредничестве Белоруссии.",
        "По словам омбудсмена, среди вернувшихся много пожилых людей.",
    ]),
    "prisoners": ([
        "Россия и Украина провели обмен пленными: домой вернулись {n} военных",
    ], [
        "Обмен пленными прошёл при посредничестве ОАЭ.",
        "Освобождённым оказывают медицинскую и психологическую помощь.",
    ]),
    "economy": ([
        "Центробанк сохранил ключевую ставку на уровне {pct}% годовых, несмотря на инфляцию",
        "Цены на нефть выросли на {small}% после заявления ОПЕК+",
    ], [
        "Аналитики ожидают, что решение регулятора поддержит курс рубля.",
        "Инфляция в прошлом месяце составила {small}% в годовом выражении.",
        "Участники рынка оценивают последствия решения для кредитования.",
    ]),
    "other": ([
        "Синоптики предупредили о сильных снегопадах: в {n2} регионах ожидается до {n} мм осадков",
        "В Москве прошли соревнования по лёгкой атлетике, в которых участвовали {n} школьников",
        "В Курске открылась выставка молодых художников, представлено {n} работ",
    ], [
        "Синоптики прогнозируют похолодание до минус {n2} градусов.",
        "Соревнования собрали более {n} участников из {n2} городов.",
        "Выставка продлится до конца месяца, вход свободный.",
        "Подробности уточняются.",
    ]),
}
UK: dict[str, tuple[list[str], list[str]]] = {
    "kursk": ([
        "ЗСУ повідомили про бої на Курському напрямку, евакуйовано {n2} цивільних",
    ], [
        "Цивільних вивозять до Сум за участі волонтерів.",
        "Про це повідомили у Генштабі.",
    ]),
    "sumy": ([
        "На Сумщині через обстріли оголосили евакуацію дітей з {n2} громад",
        "Внаслідок обстрілу Сум пошкоджено {n} будинків, повідомила ОВА",
        "Енергетики відновили живлення для {n} споживачів після атаки дронів",
    ], [
        "Про це повідомила Сумська обласна військова адміністрація.",
        "Евакуація триває, людей вивозять до безпечніших районів області.",
        "Рятувальники працювали на місці всю ніч.",
        "Місцеві жителі розповіли, що вибухи було чути кілька годин.",
        "Енергетики попереджають про можливі графіки відключень.",
    ]),
    "redcross": ([
        "Червоний Хрест передав гуманітарну допомогу {n} родинам у прикордонні",
    ], [
        "Міжнародний комітет Червоного Хреста виступив посередником.",
        "Допомога включає продукти, воду та засоби гігієни.",
    ]),
    "prisoners": ([
        "Україна повернула додому {n2} військовополонених у межах обміну",
    ], [
        "Обмін полоненими відбувся за посередництва Об'єднаних Арабських Еміратів.",
        "Звільнені отримають медичну та психологічну допомогу.",
    ]),
    "economy": ([
        "Національний банк залишив облікову ставку без змін на {pct}%",
    ], [
        "Інфляція сповільнилася до {small}% у річному вимірі.",
        "Банкіри очікують пожвавлення кредитування.",
    ]),
    "other": ([
        "У Києві відкрили виставку молодих художників, представлено {n} робіт",
        "Синоптики попередили про сильний вітер до {n2} метрів за секунду у {small_int} областях",
    ], [
        "Виставка триватиме до кінця місяця.",
        "Рятувальники закликали громадян бути обережними.",
        "Інформація уточнюється.",
    ]),
}

RU_FILLER = [
    "Подробности уточняются, официальные комментарии пока не поступали.",
    "Ранее власти сообщали, что ситуация находится под контролем.",
    "В ведомстве пообещали опубликовать дополнительную информацию в течение дня.",
    "Местные жители рассказали журналистам, что их почти не предупредили заранее.",
    "Эксперты считают, что ситуация может измениться в ближайшие дни.",
    "Как сообщает {agency}, независимо проверить эти данные пока не удалось.",
]
UK_FILLER = [
    "Деталі уточнюються, офіційних коментарів поки що немає.",
    "Раніше у відомстві повідомляли, що ситуація під контролем.",
    "Місцева влада пообіцяла оприлюднити додаткову інформацію протягом дня.",
    "Експерти вважають, що ситуація може змінитися найближчими днями.",
    "Мешканці розповіли журналістам, що їх майже не попередили заздалегідь.",
    "За даними {agency}, незалежно перевірити ці дані поки не вдалося.",
]

PAPERS = ["Courier", "Herald", "Gazette", "Tribune", "Observer", "Chronicle", "Post",
          "Dispatch", "Ledger", "Sentinel", "Monitor", "Express", "Journal", "Times",
          "Record", "Bulletin", "Standard", "Examiner", "Mercury", "Reporter"]
RU_PAPERS = ["Вестник", "Новости", "Курьер", "Известия", "Обозреватель"]
UK_PAPERS = ["Вісник", "Новини", "Кур'єр", "Оглядач"]
SECTIONS = ["World", "Europe", "Business", "Sport", "Science", "Politics", "Culture"]


# --- stories and items -------------------------------------------------------------------


def _slots(rng: random.Random) -> dict[str, str]:
    return {
        "n": str(rng.randint(12, 480)), "n2": str(rng.randint(3, 60)),
        "km": str(rng.choice([5, 10, 15, 20, 30])), "pct": f"{rng.uniform(1, 21):.2f}",
        "pct2": str(rng.randint(4, 78)), "small": f"{rng.uniform(0.2, 4.5):.1f}",
        "small_int": str(rng.randint(1, 12)), "mag": f"{rng.uniform(5.1, 7.8):.1f}",
        "deg": str(rng.randint(38, 46)), "city": rng.choice(CITIES),
        "country": rng.choice(COUNTRIES), "village": rng.choice(VILLAGES),
        "sumy_town": rng.choice(SUMY_TOWNS), "weekday": rng.choice(WEEKDAYS),
        "person": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "agency": rng.choice(AGENCIES),
        "team": rng.choice(TEAMS), "company": rng.choice(COMPANIES),
        "un_agency": rng.choice(AGENCIES_UN), "city2": rng.choice(CITIES),
        "team2": rng.choice(TEAMS), "g0": str(rng.randint(0, 2)), "g1": str(rng.randint(1, 4)),
        "product": rng.choice(PRODUCTS), "theme": rng.choice(THEMES),
        "person2": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "company2": rng.choice(COMPANIES),
        "country2": rng.choice(COUNTRIES),
        "comet": f"C/2025 {rng.choice('ABFKLNRT')}{rng.randint(1, 9)}",
        "street": rng.choice(LAST),
    }


@dataclass(frozen=True)
class Story:
    """What several feeds may report: a subject and the names and numbers in it."""

    key: str
    subject: str
    slots: dict[str, str]
    origin_link: str  # the first publisher's URL, republished now and then


def make_story(seed: int, rnd: int, k: int) -> Story:
    rng = random.Random(f"{seed}/story/{rnd}/{k}")
    subject = rng.choices(_SUBJECT_NAMES, _SUBJECT_WEIGHTS)[0]
    key = f"r{rnd}s{k}"
    wire = f"https://www.wire-{rng.randint(1, 9)}.example"
    link = f"{wire}/news/{subject}/{key}-{rng.randrange(10**6)}"
    return Story(key, subject, _slots(rng), link)


def pool_size(new_items: int) -> int:
    """Shared stories for a round: each is told by about 5 feeds."""
    return max(8, round(new_items * 0.3 / 5))


@dataclass(frozen=True)
class Feed:
    """A feed's fixed profile (derived from the seed and its index)."""

    index: int
    kind: str  # "rss" | "atom"
    lang: str  # "en" | "ru" | "uk"
    title: str
    site: str  # https://host
    spacing_min: int  # typical minutes between items
    permalink_guids: bool
    html_style: str  # "cdata" | "escaped" (RSS only)
    tz_offset_h: int  # RSS pubDate offset

    @property
    def file_name(self) -> str:
        return f"feed-{self.index:04d}.xml"

    @property
    def slug(self) -> str:
        return self.site.split("//")[1].split(".")[1]


def make_feed(seed: int, i: int) -> Feed:
    rng = random.Random(f"{seed}/feed/{i}")
    kind = "rss" if rng.random() < 0.7 else "atom"
    roll = rng.random()
    lang = "ru" if roll < 0.05 else "uk" if roll < 0.08 else "en"
    city = CITIES[i % len(CITIES)]
    edition = i // (len(CITIES) * len(PAPERS))
    if lang == "ru":
        title = f"{RU_PAPERS[i % len(RU_PAPERS)]} Курска {i}"
    elif lang == "uk":
        title = f"{UK_PAPERS[i % len(UK_PAPERS)]} Сумщини {i}"
    else:
        title = f"The {city} {PAPERS[(i // len(CITIES)) % len(PAPERS)]}"
        title += f" (edition {edition + 1})" if edition else ""
    host = f"www.{re.sub(r'[^a-z]+', '-', city.lower())}{i:04d}.example"
    return Feed(
        index=i, kind=kind, lang=lang, title=title, site=f"https://{host}",
        spacing_min=rng.choice([15, 30, 45, 60, 120, 240, 360]),
        permalink_guids=rng.random() < 0.5, html_style=rng.choice(["cdata", "escaped"]),
        tz_offset_h=rng.choice([0, 0, 0, 1, 3, -5]),
    )


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    link: str
    published: datetime
    html: str  # summary as HTML
    author: str
    section: str


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def _prose(rng: random.Random, lead: list[str], rest: list[str], slots: dict[str, str],
           target: int) -> list[str]:
    """Sentences until about `target` words: one lead, then subject and filler sentences."""
    first = rng.choice(lead)
    sentences = [_fill(first, slots)]
    pool = [s for s in rest if s != first]
    rng.shuffle(pool)
    words = len(sentences[0].split())
    while words < target and pool:
        s = _fill(pool.pop(), slots)
        if words >= 30 and words + len(s.split()) > 60:
            continue  # too long for a summary; try a shorter sentence
        sentences.append(s)
        words += len(s.split())
    return sentences


def _html(rng: random.Random, sentences: list[str], feed: Feed, link: str) -> str:
    parts = [escape(s) for s in sentences]
    if rng.random() < 0.3:  # a link inside the text
        k = rng.randrange(len(parts))
        parts[k] = f'{parts[k]} <a href="{link}#more">Read more</a>'
    if rng.random() < 0.2:
        parts[0] = f"<strong>{parts[0]}</strong>"
    half = max(1, len(parts) // 2)
    body = f"<p>{' '.join(parts[:half])}</p>"
    if parts[half:]:
        body += f"<p>{'&#160;'.join(parts[half:])}</p>"
    if rng.random() < 0.35:
        body = (f'<img src="{feed.site}/img/{rng.randrange(10**6)}.jpg" width="640" '
                f'height="360" alt="" />' + body)
    return body


def make_item(seed: int, feed: Feed, j: int, rnd: int, pool: int, when: datetime) -> Item:
    """Item number `j` of `feed`, first published in round `rnd` (pool: shared stories)."""
    rng = random.Random(f"{seed}/item/{feed.index}/{j}")
    lang = feed.lang if feed.lang != "en" else ("ru" if rng.random() < 0.02 else "en")
    shared = rng.random() < 0.3  # else a story only this feed tells
    story = make_story(seed, rnd, rng.randrange(pool) if shared
                       else 10**6 + feed.index * 10**4 + j)
    if lang == "en":
        titles, sentences = SUBJECTS[story.subject]
        title = _fill(rng.choice(titles), story.slots)
        target = rng.randint(30, 60)
        body = _prose(rng, sentences, sentences + FILLER, story.slots, target)
        if rng.random() < 0.4:
            s = story.slots
            body[0] = f"{s['city'].upper()} ({s['agency']}) - {body[0]}"
        slug_words = title
    else:
        group = CYRILLIC_GROUP.get(story.subject, "other")
        titles, sentences = (RU if lang == "ru" else UK)[group]
        title = _fill(rng.choice(titles), story.slots)
        filler = RU_FILLER if lang == "ru" else UK_FILLER
        body = _prose(rng, sentences, sentences + filler, story.slots, rng.randint(30, 60))
        slug_words = f"news {story.subject}"
    slug = "-".join(re.findall(r"[a-z0-9]+", slug_words.lower())[:8])
    link = f"{feed.site}/{when:%Y/%m/%d}/{slug}-{j}"
    if shared and rng.random() < 0.15:  # republished wire copy: same article, tracking tags
        link = f"{story.origin_link}?utm_source={feed.slug}&utm_medium=rss"
    guid = link if feed.permalink_guids else f"{feed.slug}-{j:06d}"
    author = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return Item(guid, title, link, when, _html(rng, body, feed, link), author,
                rng.choice(SECTIONS))


# --- XML ---------------------------------------------------------------------------------


def _rfc822(dt: datetime, offset_h: int) -> str:
    """RFC 822 date as RSS wants it: 'GMT' for UTC feeds, a numeric offset for others."""
    if offset_h == 0:
        return format_datetime(dt.astimezone(UTC), usegmt=True)
    return format_datetime(dt.astimezone(timezone(timedelta(hours=offset_h))))


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_rss(feed: Feed, items: list[Item], self_url: str) -> str:
    newest = max(i.published for i in items)
    lang = {"en": "en-gb", "ru": "ru-ru", "uk": "uk-ua"}[feed.lang]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel>",
        f"<title>{escape(feed.title)}</title>",
        f"<link>{feed.site}/</link>",
        f"<description>Latest news from {escape(feed.title)}</description>",
        f"<language>{lang}</language>",
        f"<lastBuildDate>{_rfc822(newest, feed.tz_offset_h)}</lastBuildDate>",
        f'<atom:link href={quoteattr(self_url)} rel="self" type="application/rss+xml"/>',
        "<ttl>10</ttl>",
    ]
    for it in items:
        desc = f"<![CDATA[{it.html}]]>" if feed.html_style == "cdata" else escape(it.html)
        permalink = "true" if feed.permalink_guids else "false"
        out += [
            "<item>",
            f"<title>{escape(it.title)}</title>",
            f"<link>{escape(it.link)}</link>",
            f'<guid isPermaLink="{permalink}">{escape(it.guid)}</guid>',
            f"<pubDate>{_rfc822(it.published, feed.tz_offset_h)}</pubDate>",
            f"<dc:creator>{escape(it.author)}</dc:creator>",
            f"<category>{it.section}</category>",
            f"<description>{desc}</description>",
            "</item>",
        ]
    out += ["</channel>", "</rss>", ""]
    return "\n".join(out)


def render_atom(feed: Feed, items: list[Item], self_url: str) -> str:
    newest = max(i.published for i in items)
    host = feed.site.split("//")[1]
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{feed.lang}">',
        f"<title>{escape(feed.title)}</title>",
        f'<link rel="alternate" type="text/html" href="{feed.site}/"/>',
        f'<link rel="self" type="application/atom+xml" href={quoteattr(self_url)}/>',
        f"<id>tag:{host},2020:feed</id>",
        f"<updated>{_rfc3339(newest)}</updated>",
    ]
    for it in items:
        entry_id = it.guid if it.guid.startswith("http") else f"tag:{host},2025:{it.guid}"
        # A third of the entries carry the HTML as content, the rest as summary (escaped);
        # by entry, so that an entry looks the same in every round.
        tag = "content" if zlib.crc32(entry_id.encode()) % 3 == 0 else "summary"
        out += [
            "<entry>",
            f'<title type="text">{escape(it.title)}</title>',
            f'<link rel="alternate" type="text/html" href={quoteattr(it.link)}/>',
            f"<id>{escape(entry_id)}</id>",
            f"<published>{_rfc3339(it.published)}</published>",
            f"<updated>{_rfc3339(it.published)}</updated>",
            f"<author><name>{escape(it.author)}</name></author>",
            f'<category term="{it.section}"/>',
            f'<{tag} type="html">{escape(it.html)}</{tag}>',
            "</entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out)


# --- the corpus on disk ------------------------------------------------------------------


@dataclass
class Corpus:
    """The manifest: enough to regenerate every live item of every feed."""

    out: Path
    seed: int
    n: int
    port: int
    hook_port: int
    anchor: datetime
    pools: dict[int, int]  # round -> shared-story pool size
    windows: list[list[tuple[int, int]]]  # per feed: live items as (item number, round)
    items: int = ITEMS_PER_FEED  # items each feed keeps
    hosts: int = 1  # feeds spread over 127.0.0.1 .. 127.0.0.<hosts> (all loopback)

    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"

    def save(self) -> None:
        data = {
            "seed": self.seed, "n": self.n, "port": self.port, "hook_port": self.hook_port,
            "anchor": self.anchor.isoformat(), "pools": {str(k): v for k, v in self.pools.items()},
            "windows": self.windows, "items": self.items, "hosts": self.hosts,
        }
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        tmp.replace(self.manifest_path)

    @classmethod
    def load(cls, out: Path) -> Corpus:
        path = out / "manifest.json"
        if not path.exists():
            raise SystemExit(f"{path} not found: run `gen_feeds.py generate --out {out}` first")
        d = json.loads(path.read_text())
        return cls(out, d["seed"], d["n"], d["port"], d["hook_port"],
                   datetime.fromisoformat(d["anchor"]), {int(k): v for k, v in d["pools"].items()},
                   [[(j, r) for j, r in w] for w in d["windows"]],
                   d.get("items", ITEMS_PER_FEED), d.get("hosts", 1))

    def feed_url(self, i: int) -> str:
        return f"http://127.0.0.{1 + i % self.hosts}:{self.port}/feeds/feed-{i:04d}.xml"

    def item_time(self, feed: Feed, j: int, rnd: int) -> datetime:
        """Round 0: a back catalogue ending near the anchor; round r: 10 minutes per round."""
        jitter = random.Random(f"{self.seed}/t/{feed.index}/{j}").randint(0, 600)
        if rnd == 0:
            age = (self.items - 1 - j) * feed.spacing_min * 60 + jitter
            return self.anchor - timedelta(seconds=age + 300)
        return self.anchor + timedelta(minutes=10 * rnd, seconds=jitter // 2 + j % 60)

    def write_feed(self, i: int) -> int:
        """Render feed `i` from its window; atomic replace. Returns bytes written."""
        feed = make_feed(self.seed, i)
        items = [make_item(self.seed, feed, j, r, self.pools[r], self.item_time(feed, j, r))
                 for j, r in reversed(self.windows[i])]  # newest first, as feeds are
        render = render_rss if feed.kind == "rss" else render_atom
        data = render(feed, items, self.feed_url(i)).encode()
        path = self.out / "feeds" / feed.file_name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return len(data)


def clear_state(out: Path) -> None:
    """Delete the watcher state file (and SQLite's side files) of an earlier run."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (out / f"watcher.db{suffix}").unlink(missing_ok=True)


def generate(out: Path, n: int, seed: int, port: int, hook_port: int, anchor: datetime,
             first_poll: str, per_host: int | None, items: int = ITEMS_PER_FEED,
             hosts: int = 1) -> Corpus:
    (out / "feeds").mkdir(parents=True, exist_ok=True)
    for stale in (out / "feeds").glob("feed-*.xml"):
        stale.unlink()
    clear_state(out)
    corpus = Corpus(out, seed, n, port, hook_port, anchor,
                    pools={0: pool_size(n * items)},
                    windows=[[(j, 0) for j in range(items)] for _ in range(n)], items=items,
                    hosts=hosts)
    total = sum(corpus.write_feed(i) for i in range(n))
    corpus.save()
    write_config(corpus, first_poll, per_host)
    log(f"generated {n} feeds ({total / 1e6:.1f} MB) in {out / 'feeds'}")
    return corpus


def mutate(out: Path, fraction: float, entries: int, rnd: int) -> list[int]:
    """Add `entries` items to a `fraction` of feeds for round `rnd`; returns the feeds."""
    corpus = Corpus.load(out)
    if rnd < 1:
        raise SystemExit("--round must be 1 or more (round 0 is the generated corpus)")
    if rnd in corpus.pools:
        raise SystemExit(f"round {rnd} was already applied to {out}; use a new round number "
                         "or regenerate")
    k = max(1, round(corpus.n * fraction))
    chosen = sorted(random.Random(f"{corpus.seed}/mutate/{rnd}").sample(range(corpus.n), k))
    corpus.pools[rnd] = pool_size(k * entries)
    for i in chosen:
        window = corpus.windows[i]
        head = max(j for j, _ in window) + 1
        window.extend((head + e, rnd) for e in range(entries))
        del window[: max(0, len(window) - corpus.items)]
        corpus.write_feed(i)
    corpus.save()
    return chosen


# --- the watcher config ------------------------------------------------------------------

# (name, any, none). The first two are the examples of DESIGN.md.
TOPICS: list[tuple[str, list[str], list[str]]] = [
    ("kursk-evacuation", ["Kursk evacuation", "evacuate Kursk residents",
                          "эвакуация жителей Курской области"],
     ["Battle of Kursk", "Kursk submarine"]),
    ("red-cross-repatriation", ["Red Cross repatriation", "ICRC repatriation",
                                "Red Cross helped arrange the return"], []),
    ("sumy-shelling", ["Sumy shelling", "shelling of Sumy", "обстріл Сум"], []),
    ("prisoner-exchange", ["prisoner exchange", "prisoner swap", "обмен пленными"], []),
    ("interest-rates", ["interest rate decision", "raises interest rates",
                        "cuts interest rates"], []),
    ("wildfires", ["wildfire evacuation", "forest fire"], []),
    ("earthquakes", ["earthquake", "tsunami warning"], []),
    ("floods", ["flash floods", "flood warning"], []),
    ("elections", ["election results", "preliminary results"], []),
    ("grain-exports", ["grain exports", "Black Sea grain"], []),
    ("cholera", ["cholera outbreak"], []),
    ("drone-attacks", ["drone attack"], []),
    ("power-outages", ["power outages", "rolling blackouts"], []),
    ("asylum", ["asylum seekers", "new refugees"], []),
    ("oil-prices", ["oil prices", "Brent crude"], []),
    ("ceasefire-talks", ["ceasefire talks", "peace talks"], []),
    ("heatwaves", ["heatwave"], []),
    ("migrant-boats", ["migrant boat capsizes", "migrant boat"], []),
    ("cyberattacks", ["cyberattack", "ransomware"], []),
    ("strikes", ["general strike", "union strike"], []),
]


def _s(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def _arr(values: list[str]) -> str:
    return "[" + ", ".join(_s(v) for v in values) + "]"


def write_config(corpus: Corpus, first_poll: str, per_host: int | None) -> Path:
    path = corpus.out / "watcher.toml"
    lines = [
        f"# Generated by benchmarks/gen_feeds.py (seed {corpus.seed}, {corpus.n} feeds).",
        "[watcher]",
        f"state = {_s(str((corpus.out / 'watcher.db').resolve()))}",
        'interval = "10m"',
        f"first_poll = {_s(first_poll)}",
    ]
    if per_host:
        lines += ["# Every feed is on 127.0.0.1 here; real feeds are spread over many hosts,",
                  "# so the per-host limit is raised to the global one.",
                  f"concurrency = {per_host}", f"per_host = {per_host}"]
    for i in range(corpus.n):
        feed = make_feed(corpus.seed, i)
        tag = "world" if feed.lang == "en" else feed.lang
        lines += ["", "[[feeds]]", f"url = {_s(corpus.feed_url(i))}",
                  f"name = {_s(feed.title)}", f"tags = [{_s(tag)}]"]
    for name, any_, none in TOPICS:
        lines += ["", "[[topics]]", f"name = {_s(name)}", f"any = {_arr(any_)}"]
        if none:
            lines.append(f"none = {_arr(none)}")
        lines.append('channels = ["bench-hook"]')
    lines += ["", "[[channels]]", 'name = "bench-hook"', 'type = "webhook"',
              f'url = "http://127.0.0.1:{corpus.hook_port}/hook"', 'format = "json"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    _validate_config(path)
    return path


def _validate_config(path: Path) -> None:
    """Check the config with the project's own loader when it is importable."""
    sys.path.insert(0, str(REPO_DIR))
    try:
        from watcher.config import ConfigError, load_config
    except Exception as exc:  # the project may be mid-change; the benchmark still works
        log(f"config written to {path} (not validated: watcher.config unavailable: {exc})")
        return
    try:
        load_config(path)
    except ConfigError as exc:
        log(f"WARNING: watcher rejects {path}:\n{exc}")
        return
    log(f"config written to {path} (validated by watcher.config)")


# --- CLI ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write N feeds, the manifest and watcher.toml")
    g.add_argument("--n", type=int, default=1000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", type=Path, default=OUT_DIR)
    g.add_argument("--port", type=int, default=FEED_PORT, help="feed server port in URLs")
    g.add_argument("--hook-port", type=int, default=HOOK_PORT, help="webhook receiver port")
    g.add_argument("--anchor", default=DEFAULT_ANCHOR,
                   help="time of the newest round-0 item (ISO 8601, or 'now')")
    g.add_argument("--items", type=int, default=ITEMS_PER_FEED,
                   help="items per feed (default %(default)s; fewer for very large N)")
    g.add_argument("--hosts", type=int, default=1,
                   help="spread the feeds over 127.0.0.1..127.0.0.<hosts> (loopback), as "
                        "real feeds are spread over many hosts (the feed server listens on each)")
    g.add_argument("--first-poll", choices=["mark-seen", "alert"], default="mark-seen")
    g.add_argument("--per-host", type=int, default=64,
                   help="write concurrency = per_host = this (0: leave the defaults)")
    m = sub.add_parser("mutate", help="add new entries to a fraction of the feeds")
    m.add_argument("--fraction", type=float, default=0.1)
    m.add_argument("--entries", type=int, default=3)
    m.add_argument("--round", type=int, default=1)
    m.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()

    if args.cmd == "generate":
        anchor = (datetime.now(UTC).replace(microsecond=0) if args.anchor == "now"
                  else datetime.fromisoformat(args.anchor))
        generate(args.out, args.n, args.seed, args.port, args.hook_port, anchor,
                 args.first_poll, args.per_host or None, args.items, args.hosts)
    else:
        chosen = mutate(args.out, args.fraction, args.entries, args.round)
        log(f"round {args.round}: added {args.entries} entries to {len(chosen)} feeds")


if __name__ == "__main__":
    main()
