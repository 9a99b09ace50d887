// Rank statistics for comparing an ordering with the paper's: ranks with ties averaged (the
// paper's Table 1 has ties, 9.23 twice) and Spearman's rho as the Pearson correlation of those
// ranks, the textbook definition that stays right with ties (the 1 - 6 sum d^2 shortcut does not).
#pragma once

#include <vector>

namespace kimi {

// 1-based ranks, ascending (the smallest value gets 1); tied values share their mean rank.
std::vector<double> average_ranks(const std::vector<double>& values);

// Spearman's rho of two equally long lists; NaN when fewer than 2 values or one list is constant.
double spearman_rho(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kimi
