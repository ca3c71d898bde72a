"""A literal port of the official SFTok modules: the baseline that equivalence tests compare against and
benchmarks time against. It lives at the top level (not in tests/ or the installed packages) so both can
import it; nothing in the product does."""
