#!/usr/bin/perl
# Reads a payment channel's settlement CSV (outside input) on stdin and writes, for
# scripts/reconcile, one tab-separated line per CSV line in PostgreSQL COPY text format:
#   row  LINE  charge_key  provider_ref  amount  currency  status  settled_at  \N
#   bad  LINE  \N ...                                                          reason
# Nothing of a refused line is passed on but its number and why. Usage: settlement-lines.pl DAY
# (YYYY-MM-DD: every settled_at must fall on that UTC day). Exits 3 if the first line is not the
# header charge_key,provider_ref,amount,currency,status,settled_at.
use strict;
use warnings;
use Time::Local qw(timegm);

my $day = shift @ARGV // die "usage: settlement-lines.pl YYYY-MM-DD\n";
my $HEADER = 'charge_key,provider_ref,amount,currency,status,settled_at';
my $MAX_LINE = 8192;
binmode STDIN;
binmode STDOUT, ':encoding(UTF-8)';

my $header = <STDIN>;
$header = '' unless defined $header;
$header =~ s/\A\xEF\xBB\xBF//;    # a byte-order mark some spreadsheets write
$header =~ s/\r?\n\z//;
exit 3 if $header ne $HEADER;

# The fields of one CSV line (RFC 4180 quoting, no line breaks inside a field), or undef.
sub fields {
    my ($rest) = @_;
    my @f;
    while (1) {
        if ($rest =~ s/\A"((?:[^"]|"")*)"(,|\z)//) {
            my ($v, $sep) = ($1, $2);
            $v =~ s/""/"/g;
            push @f, $v;
            return \@f if $sep eq '';
        } elsif ($rest =~ s/\A([^",]*)(,|\z)//) {
            my ($v, $sep) = ($1, $2);
            push @f, $v;
            return \@f if $sep eq '';
        } else {
            return undef;
        }
    }
}

# Why a line is refused, or '' with its fields in @$out.
sub check {
    my ($line, $out) = @_;
    return "longer than $MAX_LINE bytes" if length($line) > $MAX_LINE;
    return 'not UTF-8' unless utf8::decode($line);
    my $f = fields($line) or return 'bad CSV quoting';
    return sprintf('%d fields where 6 are expected', scalar @$f) if @$f != 6;
    my ($key, $ref, $amount, $currency, $status, $at) = @$f;
    return 'charge_key is not 1-128 of A-Z a-z 0-9 . _ : -' unless $key =~ /\A[A-Za-z0-9._:-]{1,128}\z/;
    return 'provider_ref is longer than 4096 characters' if length($ref) > 4096;
    return 'provider_ref holds control characters' if $ref =~ /[\x00-\x1f\x7f]/;
    return 'amount is not a positive integer of minor units' unless $amount =~ /\A[1-9][0-9]{0,17}\z/;
    return 'currency is not 3 capital letters' unless $currency =~ /\A[A-Z]{3}\z/;
    return 'status is neither succeeded nor refunded' unless $status =~ /\A(?:succeeded|refunded)\z/;
    my @t = $at =~ /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?(?:Z|([+-])(\d\d):(\d\d))\z/
      or return 'settled_at is not an RFC 3339 time';
    my $epoch = eval { timegm($t[5], $t[4], $t[3], $t[2], $t[1] - 1, $t[0]) };
    return 'settled_at is not a valid time' unless defined $epoch && $t[3] < 24 && $t[4] < 60 && $t[5] < 61;
    $epoch -= ($t[6] eq '-' ? -1 : 1) * ($t[7] * 3600 + $t[8] * 60) if defined $t[6];
    my @g = gmtime($epoch);
    my $utc_day = sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]);
    return "settled_at is not on $day (UTC)" if $utc_day ne $day;
    @$out = ($key, $ref, $amount, $currency, $status, $at);
    return '';
}

my $n = 1;
while (defined(my $line = <STDIN>)) {
    $n++;
    $line =~ s/\r?\n\z//;
    next if $line eq '';
    my @v;
    my $why = check($line, \@v);
    if ($why ne '') {
        print join("\t", 'bad', $n, ('\N') x 6, $why), "\n";
        next;
    }
    s/\\/\\\\/g for @v;    # COPY text format: the one character left to escape
    print join("\t", 'row', $n, @v, '\N'), "\n";
}
