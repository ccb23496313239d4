# The perl workload of the preload test (crates/malloc/tests/preload.rs):
# a hash and an array of 300 000 entries each, a sort, a regex pass, a
# join, then everything dropped and 100 000 small nested structures built.
use strict;
use warnings;

my (%h, @a);
for my $i (1 .. 300_000) {
    $h{"key$i"} = "value" x ($i % 7 + 1);
    push @a, [$i, "s$i"];
}
my @sorted = sort { $a->[1] cmp $b->[1] } @a;
my $matches = grep { /7$/ } keys %h;
my $joined = join(",", map { $_->[0] } @sorted[0 .. 999]);
%h = ();
@a = ();
@sorted = ();
my @records = map { { id => $_, tags => [1 .. ($_ % 10)] } } 1 .. 100_000;
print "perl ok $matches ", length($joined), " ", scalar(@records), "\n";
