"""Which recorded aliases a daemon adopts as its own: those the kernel says prisond added."""
from prisond.host.net import AliasBook, kernel_tags_addresses, tags_addresses


class TaggingNetlink:
    def __init__(self, ours: set[tuple[str, int, str]]):
        self._ours = ours

    def ours(self) -> set[tuple[str, int, str]]:
        return self._ours


def test_kernels_from_6_1_keep_who_added_an_address():
    assert kernel_tags_addresses("6.1.0-28-amd64") and kernel_tags_addresses("6.12.3")
    assert not kernel_tags_addresses("6.0.19") and not kernel_tags_addresses("5.15.0-91-generic")
    assert not kernel_tags_addresses("weird")


def test_a_record_of_an_address_prisond_did_not_add_is_not_adopted():
    book = AliasBook(TaggingNetlink({("127.0.2.1", 32, "lo"), ("fd00:2::1", 128, "lo"), ("127.0.2.30", 32, "veth1")}))
    records = [{"ip": "127.0.2.1", "prefix": 32, "iface": "lo"}, {"ip": "fd00:2::1", "prefix": 128, "iface": "lo"},
               {"ip": "127.0.2.77", "prefix": 32, "iface": "lo"},  # the host's (or gone)
               {"ip": "127.0.2.30", "prefix": 32, "iface": "lo"}]  # tagged, but on another interface
    if tags_addresses():
        assert book.adopt_recorded(records) == ["127.0.2.77", "127.0.2.30"]
        assert book.added == {"127.0.2.1": (32, "lo"), "fd00:2::1": (128, "lo")}
    else:  # no tags to go by: every record at its word
        assert book.adopt_recorded(records) == []
        assert len(book.added) == 4
